//! Checks every message a client sends before the protocol decoder sees it.
//!
//! pgwire's decoder trusts the counts and lengths inside a message: a `Bind` whose
//! parameter count runs past its end makes it read out of bounds and panic, and a message
//! shorter than its fields makes it read the next message's bytes. Here each message's
//! framing (its length, against a maximum per type) and its fields (NUL-terminated strings,
//! counts, lengths) are checked against the message's own bytes, so only well-formed
//! messages reach the decoder; anything else ends the connection with `08P01`, as
//! PostgreSQL does.

/// A startup packet is at least its length and protocol code, and at most this long
/// (PostgreSQL's own limit).
const MAX_STARTUP_LEN: usize = 10_000;
const CANCEL_CODE: u32 = 80_877_102;
const SSL_CODE: u32 = 80_877_103;
const GSS_CODE: u32 = 80_877_104;
/// A cancel request's secret key is at most 256 bytes (protocol 3.2).
const MAX_CANCEL_LEN: usize = 12 + 256;

/// How long messages of each kind may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameLimits {
    /// `Query` and `Parse`: the SQL text plus room for names and parameter types.
    pub sql: usize,
    /// `Bind` (parameter values) and `CopyData`.
    pub data: usize,
}

impl FrameLimits {
    /// Room for a SQL text of `max_sql` bytes and loads in chunks of `max_data`.
    pub(crate) fn new(max_sql: usize, max_data: usize) -> FrameLimits {
        FrameLimits {
            sql: max_sql.saturating_add(64 << 10),
            data: max_data,
        }
    }
}

/// What is wrong with a message: the text of the `08P01` error that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

fn malformed(what: impl Into<String>) -> Malformed {
    Malformed(what.into())
}

/// The length of the first message in `buf` once it is all there (`Ok(None)` while more
/// bytes are needed), or why it is malformed. `startup`: the message is the connection's
/// first, which has no type byte.
pub(crate) fn frame(
    buf: &[u8],
    startup: bool,
    limits: &FrameLimits,
) -> Result<Option<usize>, Malformed> {
    if startup {
        startup_frame(buf)
    } else {
        typed_frame(buf, limits)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn startup_frame(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be32(buf) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(malformed("invalid length of startup packet"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let code = be32(&buf[4..]);
    let body = &buf[8..len];
    match code {
        CANCEL_CODE if (16..=MAX_CANCEL_LEN).contains(&len) => {}
        CANCEL_CODE => return Err(malformed("invalid length of cancel request packet")),
        SSL_CODE | GSS_CODE => {
            return Err(malformed("encryption negotiated twice on one connection"));
        }
        // Protocol 3.x: name/value pairs, each NUL-terminated, then one more NUL.
        _ if code >> 16 == 3 => {
            let mut fields = Fields::new(body);
            loop {
                let name = fields.cstring()?;
                if name.is_empty() {
                    break;
                }
                fields.cstring()?;
            }
            fields.end()?;
        }
        _ => return Err(malformed("unsupported frontend protocol")),
    }
    Ok(Some(len))
}

fn typed_frame(buf: &[u8], limits: &FrameLimits) -> Result<Option<usize>, Malformed> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let kind = buf[0];
    let len = be32(&buf[1..]) as usize;
    if len < 4 {
        return Err(malformed("invalid message length"));
    }
    let max = match kind {
        b'Q' | b'P' => limits.sql,
        b'B' | b'd' => limits.data,
        b'S' | b'H' | b'X' | b'c' => 4,
        // Names, a password or token, an error text.
        b'E' | b'D' | b'C' | b'p' | b'f' => MAX_STARTUP_LEN,
        other => return Err(malformed(format!("invalid frontend message type {other}"))),
    };
    if len > max {
        return Err(malformed(format!(
            "message of type '{}' is {len} bytes long; at most {max} are accepted",
            kind as char
        )));
    }
    if buf.len() < len + 1 {
        return Ok(None);
    }
    let mut f = Fields::new(&buf[5..len + 1]);
    match kind {
        // Query, a password (or token), CopyFail: one string.
        b'Q' | b'p' | b'f' => {
            f.cstring()?;
        }
        b'P' => {
            f.cstring()?;
            f.cstring()?;
            let types = f.count()?;
            f.take(types * 4)?;
        }
        b'B' => {
            f.cstring()?;
            f.cstring()?;
            let formats = f.count()?;
            f.take(formats * 2)?;
            for _ in 0..f.count()? {
                let len = f.i32()?;
                match len {
                    -1 => {}
                    n if n >= 0 => {
                        f.take(n as usize)?;
                    }
                    _ => return Err(malformed("invalid parameter length in Bind")),
                }
            }
            let results = f.count()?;
            f.take(results * 2)?;
        }
        b'E' => {
            f.cstring()?;
            f.i32()?;
        }
        b'D' | b'C' => {
            match f.take(1)?[0] {
                b'S' | b'P' => {}
                _ => return Err(malformed("invalid Describe/Close target")),
            }
            f.cstring()?;
        }
        // CopyData: any bytes. Sync, Flush, Terminate, CopyDone: nothing (length 4).
        _ => {
            f.take(f.rest())?;
        }
    }
    f.end()?;
    Ok(Some(len + 1))
}

/// A cursor over one message's body.
struct Fields<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(body: &'a [u8]) -> Self {
        Fields { body, at: 0 }
    }

    fn rest(&self) -> usize {
        self.body.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.rest() {
            return Err(malformed("message shorter than its contents"));
        }
        let part = &self.body[self.at..self.at + n];
        self.at += n;
        Ok(part)
    }

    fn cstring(&mut self) -> Result<&'a [u8], Malformed> {
        let rest = &self.body[self.at..];
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| malformed("string not terminated within its message"))?;
        self.at += end + 1;
        Ok(&rest[..end])
    }

    fn i32(&mut self) -> Result<i32, Malformed> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A 16-bit count (the protocol's counts are unsigned).
    fn count(&mut self) -> Result<usize, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn end(&self) -> Result<(), Malformed> {
        if self.rest() != 0 {
            return Err(malformed("message longer than its contents"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        sql: 1 << 20,
        data: 1 << 20,
    };

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn check(message: &[u8]) -> Result<Option<usize>, Malformed> {
        frame(message, false, &LIMITS)
    }

    fn bind(parameters: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = b"\0\0".to_vec();
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&(parameters.len() as u16).to_be_bytes());
        for p in parameters {
            match p {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b.extend_from_slice(&0u16.to_be_bytes());
        typed(b'B', &b)
    }

    #[test]
    fn well_formed_messages_pass_with_their_length() {
        let q = typed(b'Q', b"select 1\0");
        assert_eq!(check(&q), Ok(Some(q.len())));
        let b = bind(&[Some(b"42"), None]);
        assert_eq!(check(&b), Ok(Some(b.len())));
        let p = typed(b'P', b"s1\0select $1\0\0\x01\0\0\0\x17");
        assert_eq!(check(&p), Ok(Some(p.len())));
        for m in [
            typed(b'E', b"\0\0\0\0\0"),
            typed(b'D', b"S\0"),
            typed(b'C', b"Pportal\0"),
            typed(b'S', b""),
            typed(b'X', b""),
            typed(b'd', b"1,2\n"),
        ] {
            assert_eq!(check(&m), Ok(Some(m.len())), "{m:?}");
        }
        // Followed by the next message: only the first one's length.
        let mut two = typed(b'S', b"");
        two.extend(typed(b'Q', b"select 2\0"));
        assert_eq!(check(&two), Ok(Some(5)));
    }

    #[test]
    fn incomplete_messages_wait_for_more_bytes() {
        let q = typed(b'Q', b"select 1\0");
        for cut in 0..q.len() {
            assert_eq!(check(&q[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn truncated_bind_parse_and_execute_are_refused() {
        // The counts promise more than the message holds: pgwire panicked on these.
        let mut b = b"\0\0".to_vec();
        b.extend_from_slice(&5u16.to_be_bytes());
        assert!(check(&typed(b'B', &b)).is_err());
        let mut b = b"\0\0\0\0".to_vec();
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&1000i32.to_be_bytes());
        b.extend_from_slice(b"short");
        assert!(check(&typed(b'B', &b)).is_err());
        assert!(check(&typed(b'B', b"")).is_err());
        assert!(check(&typed(b'P', b"s1\0select 1\0\0\x09")).is_err());
        assert!(check(&typed(b'E', b"\0\0\0")).is_err());
        assert!(check(&typed(b'E', b"unterminated")).is_err());
        assert!(check(&typed(b'D', b"X\0")).is_err());
        // Longer than its contents: the rest would be read as another message.
        assert!(check(&typed(b'S', b"x")).is_err());
        assert!(check(&typed(b'Q', b"select 1\0extra")).is_err());
        // A negative length other than NULL's -1.
        let mut b = b"\0\0\0\0".to_vec();
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&(-7i32).to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        assert!(check(&typed(b'B', &b)).is_err());
    }

    #[test]
    fn lengths_and_types_are_checked_before_buffering() {
        // Announced too long: refused from the header alone, before its bytes arrive.
        let mut huge = vec![b'Q'];
        huge.extend_from_slice(&(2u32 << 20).to_be_bytes());
        assert!(check(&huge).is_err());
        let mut short = vec![b'Q'];
        short.extend_from_slice(&3u32.to_be_bytes());
        assert!(check(&short).is_err());
        assert!(check(&typed(b'F', b"")).is_err());
        assert!(check(&typed(b'Z', b"")).is_err());
    }

    #[test]
    fn startup_packets_are_checked() {
        let mut s = Vec::new();
        let body = b"\0\x03\0\0user\0me\0database\0dev\0\0";
        s.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        s.extend_from_slice(body);
        assert_eq!(frame(&s, true, &LIMITS), Ok(Some(s.len())));
        assert_eq!(frame(&s[..6], true, &LIMITS), Ok(None));
        // Lengths 0–7 and past the maximum.
        for len in [0u32, 1, 4, 7, 10_001, u32::MAX] {
            let mut p = len.to_be_bytes().to_vec();
            p.extend_from_slice(&[0; 8]);
            assert!(frame(&p, true, &LIMITS).is_err(), "length {len}");
        }
        // A parameter list that runs off its end, or a value without its terminator.
        let mut p = Vec::new();
        let body = b"\0\x03\0\0user\0me";
        p.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        p.extend_from_slice(body);
        assert!(frame(&p, true, &LIMITS).is_err());
        // A cancel request: 16 bytes (or a longer 3.2 key).
        let mut c = 16u32.to_be_bytes().to_vec();
        c.extend_from_slice(&CANCEL_CODE.to_be_bytes());
        c.extend_from_slice(&[0; 8]);
        assert_eq!(frame(&c, true, &LIMITS), Ok(Some(16)));
        let mut c = 12u32.to_be_bytes().to_vec();
        c.extend_from_slice(&CANCEL_CODE.to_be_bytes());
        c.extend_from_slice(&[0; 4]);
        assert!(frame(&c, true, &LIMITS).is_err());
    }

    /// Random bytes, and mutations of well-formed messages, through the check and then
    /// pgwire's decoder (as a connection does): what the check lets through decodes without a
    /// panic and to exactly its own bytes. A bounded run in every test run;
    /// `PROPTEST_CASES` runs longer.
    mod fuzz {
        use bytes::BytesMut;
        use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
        use proptest::prelude::*;

        use super::*;

        fn seeds() -> Vec<(bool, Vec<u8>)> {
            let mut startup = Vec::new();
            let body = b"\0\x03\0\0user\0me\0database\0dev\0\0";
            startup.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            startup.extend_from_slice(body);
            let mut cancel = 16u32.to_be_bytes().to_vec();
            cancel.extend_from_slice(&CANCEL_CODE.to_be_bytes());
            cancel.extend_from_slice(&[0, 0, 0, 7, 1, 2, 3, 4]);
            let mut execute = b"portal\0".to_vec();
            execute.extend_from_slice(&100i32.to_be_bytes());
            vec![
                (true, startup),
                (true, cancel),
                (false, typed(b'Q', b"select 1; select 2\0")),
                (
                    false,
                    typed(b'P', b"s1\0select $1, $2\0\0\x02\0\0\0\x17\0\0\0\x19"),
                ),
                (false, bind(&[Some(b"42"), None, Some(b"")])),
                (false, typed(b'E', &execute)),
                (false, typed(b'D', b"Ps1\0")),
                (false, typed(b'C', b"Sportal\0")),
                (false, typed(b'S', b"")),
                (false, typed(b'H', b"")),
                (false, typed(b'd', b"1,2\n3,4\n")),
                (false, typed(b'c', b"")),
                (false, typed(b'f', b"gave up\0")),
                (false, typed(b'p', b"ek_secret\0")),
            ]
        }

        /// Checks `bytes` message by message as [`super::super::checked`] does, decoding each
        /// accepted one on its own.
        fn check_and_decode(bytes: &[u8], mut startup: bool) {
            let mut rest = bytes;
            while let Ok(Some(len)) = frame(rest, startup, &LIMITS) {
                let mut message = BytesMut::from(&rest[..len]);
                // As a new connection decodes: protocol 3.2 until the startup says otherwise.
                let mut ctx = DecodeContext::new(ProtocolVersion::default());
                ctx.awaiting_frontend_ssl = false;
                ctx.awaiting_frontend_startup = startup;
                let decoded = PgWireFrontendMessage::decode(&mut message, &ctx);
                if let Ok(Some(_)) = decoded {
                    assert!(
                        message.is_empty(),
                        "decoding {:?} left {} bytes",
                        &rest[..len],
                        message.len()
                    );
                }
                rest = &rest[len..];
                startup = false;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 2000,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), startup: bool) {
                check_and_decode(&bytes, startup);
            }

            #[test]
            fn mutated_messages(
                seed in 0..14usize,
                edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 1..8),
                then in 0..14usize,
            ) {
                let seeds = seeds();
                let (startup, mut bytes) = seeds[seed % seeds.len()].clone();
                for (at, byte, how) in edits {
                    let at = at % (bytes.len() + 1);
                    match how {
                        0 if at < bytes.len() => bytes[at] = byte,
                        1 => bytes.insert(at, byte),
                        _ => bytes.truncate(at),
                    }
                }
                // Followed by a well-formed message, which must still decode on its own.
                let next = seeds[then % seeds.len()].clone();
                if !next.0 {
                    bytes.extend(next.1);
                }
                check_and_decode(&bytes, startup);
            }
        }
    }
}
