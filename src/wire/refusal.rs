//! Why the comparator refused an upload: a code in byte 6 of a `Rejected` or `Busy` frame
//! header (see [`frame`](super::frame)), next to the UTF-8 text for humans in the payload.
//! Clients decide on the kind and this code, never on the words.
//!
//! Codes come in ranges so that a client meets a code newer than itself with the right
//! reflex: `1..=31` are final (the same bytes get the same answer), `32..=63` are transient
//! (send the same upload again later). `0` is "no code": a comparator older than the codes,
//! which wrote 0 in this reserved byte.

enum_with_unknown! {
    /// The reason code of a refusal.
    pub enum Reason {
        /// No code given (a comparator from before reason codes): only the kind says more.
        Unstated = 0,
        /// Not an upload frame, or a header or payload cut short.
        BadFrame = 1,
        /// The announced length is over the comparator's `--max-upload`.
        TooLarge = 2,
        /// The payload is not a delivery log.
        BadLog = 3,
        /// The log claims more peers than the comparator's `--max-peers`.
        TooManyPeers = 4,
        /// The run was already reported; a new run needs a new run id.
        AlreadyReported = 5,
        /// The run is being reported right now (all logs in, or its timeout passed).
        BeingReported = 6,
        /// The log's peers × messages differ from the run's first log.
        RunMismatch = 7,
        /// This (run, peer) is already stored; the first upload is kept.
        Duplicate = 8,
        /// The source started too many incomplete runs.
        TooManyRuns = 9,
        /// Nothing (or not enough) arrived within the read timeout.
        ReadTimeout = 10,
        /// The upload fell below the minimum rate.
        TooSlow = 11,
        /// The run could not be analysed (a bug in the comparator).
        AnalysisFailed = 12,
        /// Over the memory budget for incomplete runs and uploads (`--max-pending`).
        OverBudget = 32,
        /// The source holds as many connections as it may at once.
        SourceFull = 33,
        /// The comparator holds as many connections as it may at once.
        Full = 34,
        /// This silent connection was closed to make room for a newer one.
        Evicted = 35,
        /// The results line could not be written; the log was not stored.
        NotWritten = 36,
    }
}

impl Reason {
    /// True when sending the same upload again later may succeed; decided by the code's
    /// range, so codes this build does not know are classified too.
    pub fn is_transient(self) -> bool {
        (32..=63).contains(&u8::from(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_ranges_classify_unknown_ones() {
        for code in 0..=u8::MAX {
            assert_eq!(u8::from(Reason::from(code)), code);
        }
        assert!(!Reason::Duplicate.is_transient());
        assert!(!Reason::Unstated.is_transient());
        assert!(Reason::OverBudget.is_transient());
        assert!(Reason::NotWritten.is_transient());
        assert_eq!(Reason::from(40), Reason::Unknown(40));
        assert!(Reason::from(40).is_transient(), "a newer transient code");
        assert!(!Reason::from(20).is_transient(), "a newer final code");
        assert!(!Reason::from(64).is_transient());
    }
}
