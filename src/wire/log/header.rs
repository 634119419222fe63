//! `LogHeader`: its fixed fields, the two strings and the per-sender trailer, both ways.

use byteorder::{ByteOrder, NetworkEndian};

use super::*;

impl LogHeader {
    /// Bytes `emit` writes (strings are cut to 255 bytes on a char boundary).
    pub fn buffer_len(&self) -> usize {
        HEADER_FIXED_LEN + short(&self.wan).len() + short(&self.zone).len()
    }

    /// Bytes of the trailer `encode` writes after the records.
    pub fn trailer_len(&self) -> usize {
        STREAM_END_LEN * usize::from(self.peers)
    }

    pub(super) fn emit_trailer(&self, buf: &mut [u8]) {
        for (p, chunk) in buf.chunks_exact_mut(STREAM_END_LEN).enumerate() {
            let end = self.streams.get(p).copied().flatten();
            let known = end.map_or(UNKNOWN_U32, |e| e.known.min(UNKNOWN_U32 - 1));
            let stop = end.and_then(|e| e.stop).unwrap_or(UNKNOWN_U32);
            NetworkEndian::write_u32(&mut chunk[0..4], known);
            NetworkEndian::write_u32(&mut chunk[4..8], stop);
        }
    }

    pub(super) fn parse_trailer(buf: &[u8]) -> Vec<Option<StreamEnd>> {
        buf.chunks_exact(STREAM_END_LEN)
            .map(|c| {
                let known = NetworkEndian::read_u32(&c[0..4]);
                let stop = NetworkEndian::read_u32(&c[4..8]);
                (known != UNKNOWN_U32).then_some(StreamEnd {
                    known,
                    stop: (stop != UNKNOWN_U32).then_some(stop),
                })
            })
            .collect()
    }

    pub fn time_scale(&self) -> f64 {
        f64::from(self.time_scale_ppm) / f64::from(SCALE_ONE)
    }

    /// Write the header into `buf[..self.buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) {
        let wan = short(&self.wan);
        let zone = short(&self.zone);
        buf[field::MAGIC].copy_from_slice(MAGIC);
        NetworkEndian::write_u16(&mut buf[field::VERSION], VERSION);
        NetworkEndian::write_u16(&mut buf[field::HEADER_LEN], self.buffer_len() as u16);
        NetworkEndian::write_u64(&mut buf[field::RUN_ID], self.run_id);
        NetworkEndian::write_u16(&mut buf[field::PEER_ID], self.peer_id);
        NetworkEndian::write_u16(&mut buf[field::PEERS], self.peers);
        NetworkEndian::write_u32(&mut buf[field::MSGS], self.msgs);
        buf[field::TRANSPORT] = self.transport.map_or(0xff, Transport::as_u8);
        let mut flags = 0;
        if self.kernel_stamps {
            flags |= FLAG_KERNEL_STAMPS;
        }
        if self.authenticated {
            flags |= FLAG_AUTHENTICATED;
        }
        buf[field::FLAGS] = flags;
        NetworkEndian::write_u16(&mut buf[field::MSG_SIZE], self.msg_size);
        NetworkEndian::write_u64(&mut buf[field::START_NS], self.start_ns);
        let clock = self.clock_error_ns.unwrap_or(CLOCK_UNKNOWN);
        NetworkEndian::write_u64(&mut buf[field::CLOCK_ERROR_NS], clock);
        NetworkEndian::write_u64(&mut buf[field::SETUP_NS], self.setup_ns);
        NetworkEndian::write_u64(&mut buf[field::DURATION_NS], self.duration_ns);
        NetworkEndian::write_u64(&mut buf[field::MALFORMED], self.malformed);
        NetworkEndian::write_u64(&mut buf[field::FOREIGN], self.foreign);
        NetworkEndian::write_u64(&mut buf[field::RECORD_COUNT], self.record_count);
        NetworkEndian::write_u32(&mut buf[field::SENT], self.sent);
        NetworkEndian::write_u32(&mut buf[field::TIME_SCALE], self.time_scale_ppm);
        buf[field::WAN_LEN] = wan.len() as u8;
        buf[field::ZONE_LEN] = zone.len() as u8;
        buf[field::ORDER] = self.order.as_u8();
        buf[field::REPAIR] = self.repair.as_u8();
        let c = &self.cost;
        NetworkEndian::write_u64(&mut buf[field::CONTROL_DATAGRAMS], c.control_datagrams);
        NetworkEndian::write_u64(&mut buf[field::CONTROL_BYTES], c.control_bytes);
        NetworkEndian::write_u64(&mut buf[field::RETRANSMISSIONS], c.retransmissions);
        NetworkEndian::write_u64(&mut buf[field::NACKS_SENT], c.nacks_sent);
        NetworkEndian::write_u64(&mut buf[field::GIVEN_UP], c.given_up);
        NetworkEndian::write_u64(&mut buf[field::DUPLICATES_DROPPED], c.duplicates_dropped);
        NetworkEndian::write_u32(&mut buf[field::FAILURE], self.failure);
        NetworkEndian::write_u64(&mut buf[field::FORGED], self.forged);
        NetworkEndian::write_u64(&mut buf[field::KERNEL_DROPS], self.kernel_drops);
        let data = self.data_datagrams_sent;
        NetworkEndian::write_u64(&mut buf[field::DATA_DATAGRAMS_SENT], data);
        NetworkEndian::write_u64(&mut buf[field::DATA_BYTES_SENT], self.data_bytes_sent);
        NetworkEndian::write_u64(&mut buf[field::SEND_SYSCALLS], self.send_syscalls);
        NetworkEndian::write_u64(&mut buf[field::RECV_SYSCALLS], self.recv_syscalls);
        NetworkEndian::write_u64(&mut buf[field::CPU_NS], self.cpu_ns);
        NetworkEndian::write_u64(&mut buf[field::SEND_DROPS], self.send_drops);
        buf[field::DATA_TTL] = self.data_ttl;
        buf[field::RESERVED].fill(0);
        let w = field::VARIABLE;
        buf[w..w + wan.len()].copy_from_slice(wan.as_bytes());
        buf[w + wan.len()..w + wan.len() + zone.len()].copy_from_slice(zone.as_bytes());
    }

    /// Parse a header from the start of `data`; returns it and the header length, where the
    /// records begin.
    pub fn parse(data: &[u8]) -> Result<(LogHeader, usize)> {
        if data.len() < HEADER_FIXED_LEN_V2 {
            return Err(if data.len() >= 8 && &data[field::MAGIC] != MAGIC {
                Error::BadMagic
            } else {
                Error::Truncated
            });
        }
        if &data[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        let fixed = match NetworkEndian::read_u16(&data[field::VERSION]) {
            VERSION => HEADER_FIXED_LEN,
            VERSION_3 => HEADER_FIXED_LEN_V3,
            VERSION_2 => HEADER_FIXED_LEN_V2,
            _ => return Err(Error::BadVersion),
        };
        if data.len() < fixed {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(NetworkEndian::read_u16(&data[field::HEADER_LEN]));
        let wan_len = usize::from(data[field::WAN_LEN]);
        let zone_len = usize::from(data[field::ZONE_LEN]);
        if header_len < fixed + wan_len + zone_len {
            return Err(Error::BadLength);
        }
        if data.len() < header_len {
            return Err(Error::Truncated);
        }
        let transport = match data[field::TRANSPORT] {
            0xff => None,
            t => Some(Transport::from_u8(t)?),
        };
        let w = fixed;
        let text = |r: Field| {
            std::str::from_utf8(&data[r])
                .map(str::to_owned)
                .map_err(|_| Error::BadValue)
        };
        let wan = text(w..w + wan_len)?;
        let zone = text(w + wan_len..w + wan_len + zone_len)?;
        let peers = NetworkEndian::read_u16(&data[field::PEERS]);
        let peer_id = NetworkEndian::read_u16(&data[field::PEER_ID]);
        if peers == 0 || peer_id >= peers {
            return Err(Error::BadValue);
        }
        let clock = NetworkEndian::read_u64(&data[field::CLOCK_ERROR_NS]);
        let u64_at = |f: Field| NetworkEndian::read_u64(&data[f]);
        // Version 2 has none of the fields after `forged`: they read as 0.
        let v3_at = |f: Field| if fixed >= f.end { u64_at(f) } else { 0 };
        let cost = Cost {
            control_datagrams: u64_at(field::CONTROL_DATAGRAMS),
            control_bytes: u64_at(field::CONTROL_BYTES),
            retransmissions: u64_at(field::RETRANSMISSIONS),
            nacks_sent: u64_at(field::NACKS_SENT),
            given_up: u64_at(field::GIVEN_UP),
            duplicates_dropped: u64_at(field::DUPLICATES_DROPPED),
        };
        let header = LogHeader {
            run_id: NetworkEndian::read_u64(&data[field::RUN_ID]),
            peer_id,
            peers,
            msgs: NetworkEndian::read_u32(&data[field::MSGS]),
            transport,
            kernel_stamps: data[field::FLAGS] & FLAG_KERNEL_STAMPS != 0,
            authenticated: data[field::FLAGS] & FLAG_AUTHENTICATED != 0,
            msg_size: NetworkEndian::read_u16(&data[field::MSG_SIZE]),
            start_ns: NetworkEndian::read_u64(&data[field::START_NS]),
            clock_error_ns: (clock != CLOCK_UNKNOWN).then_some(clock),
            setup_ns: NetworkEndian::read_u64(&data[field::SETUP_NS]),
            duration_ns: NetworkEndian::read_u64(&data[field::DURATION_NS]),
            malformed: NetworkEndian::read_u64(&data[field::MALFORMED]),
            foreign: NetworkEndian::read_u64(&data[field::FOREIGN]),
            record_count: NetworkEndian::read_u64(&data[field::RECORD_COUNT]),
            sent: NetworkEndian::read_u32(&data[field::SENT]),
            time_scale_ppm: NetworkEndian::read_u32(&data[field::TIME_SCALE]),
            wan,
            zone,
            order: Order::from_u8(data[field::ORDER])?,
            repair: Repair::from_u8(data[field::REPAIR])?,
            cost,
            failure: NetworkEndian::read_u32(&data[field::FAILURE]),
            forged: NetworkEndian::read_u64(&data[field::FORGED]),
            kernel_drops: v3_at(field::KERNEL_DROPS),
            data_datagrams_sent: v3_at(field::DATA_DATAGRAMS_SENT),
            data_bytes_sent: v3_at(field::DATA_BYTES_SENT),
            send_syscalls: v3_at(field::SEND_SYSCALLS),
            recv_syscalls: v3_at(field::RECV_SYSCALLS),
            cpu_ns: v3_at(field::CPU_NS),
            send_drops: v3_at(field::SEND_DROPS),
            data_ttl: if fixed > field::DATA_TTL {
                data[field::DATA_TTL]
            } else {
                0
            },
            streams: Vec::new(),
        };
        Ok((header, header_len))
    }
}

/// At most 255 bytes of `s`, cut on a char boundary.
fn short(s: &str) -> &str {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
