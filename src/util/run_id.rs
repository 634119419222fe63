//! Run ids in text: one 16-digit lower-case hex string everywhere (reports, JSON, file names,
//! C2 output), so `jq -r .run_id` gives the string that names the run's files. JSON carries it
//! as a string because a u64 passes 2^53, past what jq 1.6 and JavaScript hold exactly.

use std::fmt;

/// Displays a run id in its one text form, e.g. `0000000000000042`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunHex(pub u64);

impl fmt::Display for RunHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Reads a run id: 16 hex digits (the form mpcomm prints), `0x` and hex, or a shorter decimal
/// number. 0 is refused: it means "not agreed yet" on the wire.
pub fn parse(s: &str) -> Result<u64, String> {
    match parse_text(s)? {
        0 => Err("run id 0 is reserved (it means: not agreed yet)".into()),
        v => Ok(v),
    }
}

/// The same forms, 0 included (a report of a run whose id was never agreed carries 0).
fn parse_text(s: &str) -> Result<u64, String> {
    let v = if let Some(hex) = s.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u64::from_str_radix(s, 16).ok()
    } else {
        s.parse().ok()
    };
    v.ok_or_else(|| {
        format!("{s:?} is not a run id: give its 16 hex digits as mpcomm prints them (or 0x-hex, or decimal)")
    })
}

/// `#[serde(with = "crate::util::run_id::json")]` on a `u64` field: written as the hex string;
/// read from that string or, for results files written before, from a JSON number.
pub mod json {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::RunHex(*id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(n),
            Either::Text(t) => super::parse_text(&t).map_err(de::Error::custom),
        }
    }
}

/// The same for an `Option<u64>` field (`null` when there is no id yet).
pub mod json_opt {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.collect_str(&super::RunHex(*id)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_form_both_ways() {
        let id = 0x149e_505b_f8f7_a118;
        assert_eq!(RunHex(id).to_string(), "149e505bf8f7a118");
        assert_eq!(RunHex(0x2a).to_string(), "000000000000002a");
        assert_eq!(parse("149e505bf8f7a118"), Ok(id));
        assert_eq!(parse("000000000000002a"), Ok(0x2a));
        assert_eq!(parse("0x2a"), Ok(42));
        assert_eq!(parse("42"), Ok(42));
        assert!(parse("0").is_err());
        assert!(parse("x").is_err());
        assert!(parse("0000000000000000").is_err());
    }

    #[test]
    fn json_is_a_string_and_old_numbers_still_read() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct R {
            #[serde(with = "json")]
            run_id: u64,
        }
        let s = serde_json::to_string(&R {
            run_id: 0x149e_505b_f8f7_a118,
        })
        .unwrap();
        assert_eq!(s, r#"{"run_id":"149e505bf8f7a118"}"#);
        let back: R = serde_json::from_str(&s).unwrap();
        assert_eq!(back.run_id, 0x149e_505b_f8f7_a118);
        let old: R = serde_json::from_str(r#"{"run_id":1485713283028066600}"#).unwrap();
        assert_eq!(old.run_id, 1485713283028066600);
    }
}
