//! The field encodings of C2 bodies, read and written in order: integers big-endian; `str` =
//! u32 length + UTF-8, each field with its width; `ip` = family (4 or 6) + 4 or 16 bytes;
//! `sock` = `ip` + u16 port; `list` = u16 count + items; `opt` = 0, or 1 + the value.
//!
//! The reader turns every short read into `Truncated`, so a decoder built on it is total.

use byteorder::{ByteOrder, NetworkEndian};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::{Error, Order, Repair, Result, Transport};

/// "No repair asked for" in a RUN_REQUEST (the mode's default).
pub(super) const NO_REPAIR: u8 = 0xff;

/// The smallest encodings of list items, so that a count can be checked against the bytes
/// that follow before anything is allocated.
pub(super) const MIN_SOCK_LEN: usize = 1 + 4 + 2;
pub(super) const MIN_STR_LEN: usize = 4;
pub(super) const MIN_AGENT_LEN: usize = 1 + 4 + MIN_STR_LEN + 1 + 1 + 4;

pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16> {
        Ok(NetworkEndian::read_u16(self.take(2)?))
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(NetworkEndian::read_u32(self.take(4)?))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(NetworkEndian::read_u64(self.take(8)?))
    }
    /// An IEEE 754 double as its 64 bits. NaN and the infinities are no value of any field
    /// (bounds of finite ones are the handler's).
    pub(super) fn f64(&mut self) -> Result<f64> {
        let v = f64::from_bits(self.u64()?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Error::BadValue)
        }
    }
    pub(super) fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::BadValue),
        }
    }
    /// A string of at most `width` bytes.
    pub(super) fn str(&mut self, width: usize) -> Result<String> {
        let n = self.u32()? as usize;
        if n > width {
            return Err(Error::BadLength);
        }
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| Error::BadValue)
    }
    pub(super) fn ip(&mut self) -> Result<IpAddr> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            _ => Err(Error::BadValue),
        }
    }
    pub(super) fn opt_u64(&mut self) -> Result<Option<u64>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.u64().map(Some),
            _ => Err(Error::BadValue),
        }
    }
    /// Family 0 = none.
    pub(super) fn opt_ip(&mut self) -> Result<Option<IpAddr>> {
        if self.0.first() == Some(&0) {
            self.take(1)?;
            return Ok(None);
        }
        self.ip().map(Some)
    }
    pub(super) fn sock(&mut self) -> Result<SocketAddr> {
        let ip = self.ip()?;
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    pub(super) fn opt_sock(&mut self) -> Result<Option<SocketAddr>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.sock().map(Some),
            _ => Err(Error::BadValue),
        }
    }
    /// A list count: refused when even the smallest items could not fit in what follows,
    /// so a count never makes us allocate more than the frame holds.
    pub(super) fn count(&mut self, min_item_len: usize) -> Result<usize> {
        let n = usize::from(self.u16()?);
        if n.saturating_mul(min_item_len) > self.0.len() {
            return Err(Error::Truncated);
        }
        Ok(n)
    }
    /// A list of at most `max` items (the field's width, like a string's).
    pub(super) fn list<T>(
        &mut self,
        min_item_len: usize,
        max: usize,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = self.count(min_item_len)?;
        if n > max {
            return Err(Error::BadLength);
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }
    pub(super) fn transport(&mut self) -> Result<Transport> {
        Transport::from_u8(self.u8()?)
    }
    pub(super) fn order(&mut self) -> Result<Order> {
        Order::from_u8(self.u8()?)
    }
    pub(super) fn repair(&mut self) -> Result<Repair> {
        Repair::from_u8(self.u8()?)
    }
    /// [`NO_REPAIR`] = none (the mode's default); otherwise a repair code.
    pub(super) fn opt_repair(&mut self) -> Result<Option<Repair>> {
        match self.u8()? {
            NO_REPAIR => Ok(None),
            v => Repair::from_u8(v).map(Some),
        }
    }
    /// The optional trailing flags byte of a RUN or RUN_REQUEST (0 when absent); a 0 byte
    /// (never written) and unknown bits are errors, so every value has one encoding.
    pub(super) fn run_flags(&mut self) -> Result<u8> {
        if self.0.is_empty() {
            return Ok(0);
        }
        match self.u8()? {
            0 => Err(Error::BadLength),
            f if f & !super::msg::FLAG_SSM != 0 => Err(Error::BadValue),
            f => Ok(f),
        }
    }
    pub(super) fn end(&self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::BadLength)
        }
    }
}

/// Appends to the caller's buffer (reused per connection).
pub(super) struct Writer<'a>(pub(super) &'a mut Vec<u8>);

impl Writer<'_> {
    /// The flags byte, only when a flag is set: without one the bytes are what they were
    /// before flags existed, so an older peer of the link reads every other run as before.
    pub(super) fn run_flags(&mut self, ssm: bool) {
        if ssm {
            self.u8(super::msg::FLAG_SSM);
        }
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    pub(super) fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    /// Strings longer than `width` are cut at a char boundary, so emit never makes a frame the
    /// other side must refuse.
    pub(super) fn str(&mut self, s: &str, width: usize) {
        let mut n = s.len().min(width);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.u32(n as u32);
        self.bytes(&s.as_bytes()[..n]);
    }
    pub(super) fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.u8(4);
                self.bytes(&a.octets());
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.bytes(&a.octets());
            }
        }
    }
    pub(super) fn opt_ip(&mut self, ip: Option<IpAddr>) {
        match ip {
            None => self.u8(0),
            Some(ip) => self.ip(ip),
        }
    }
    pub(super) fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
        }
    }
    pub(super) fn sock(&mut self, a: SocketAddr) {
        self.ip(a.ip());
        self.u16(a.port());
    }
    pub(super) fn opt_sock(&mut self, a: Option<SocketAddr>) {
        match a {
            None => self.u8(0),
            Some(a) => {
                self.u8(1);
                self.sock(a);
            }
        }
    }
    /// A list of at most `max` items (and `u16::MAX`): more are not sent.
    pub(super) fn list<T>(&mut self, items: &[T], max: usize, mut item: impl FnMut(&mut Self, &T)) {
        let n = items.len().min(max).min(usize::from(u16::MAX));
        self.u16(n as u16);
        for i in &items[..n] {
            item(self, i);
        }
    }
}
