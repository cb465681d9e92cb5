//! Kafka's primitive wire types (big-endian integers, unsigned varints, classic and compact
//! strings and arrays, tagged-field sections), just enough for the raw requests in [`super::raw`].
//! The reader fails, never panics, on short or malformed input.

use anyhow::{Context, Result, bail, ensure};

/// Appends Kafka primitive types to a buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn i8(&mut self, v: i8) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    pub fn uvarint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            // Truncation is the point: the low 7 bits plus the continuation bit.
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        self
    }
    /// STRING (`flexible = false`) or COMPACT_STRING.
    pub fn string(&mut self, v: &str, flexible: bool) -> &mut Self {
        self.nullable_string(Some(v), flexible)
    }
    /// NULLABLE_STRING or COMPACT_NULLABLE_STRING.
    pub fn nullable_string(&mut self, v: Option<&str>, flexible: bool) -> &mut Self {
        match (v, flexible) {
            (None, false) => self.i16(-1),
            (None, true) => self.uvarint(0),
            (Some(s), false) => self
                .i16(i16::try_from(s.len()).unwrap_or(i16::MAX))
                .bytes(s.as_bytes()),
            (Some(s), true) => self.uvarint(s.len() as u64 + 1).bytes(s.as_bytes()),
        }
    }
    /// The length prefix of an ARRAY or COMPACT_ARRAY of `len` elements.
    pub fn array_len(&mut self, len: usize, flexible: bool) -> &mut Self {
        if flexible {
            self.uvarint(len as u64 + 1)
        } else {
            self.i32(i32::try_from(len).unwrap_or(i32::MAX))
        }
    }
    /// An empty tagged-field section (flexible versions only).
    pub fn no_tagged_fields(&mut self, flexible: bool) -> &mut Self {
        if flexible { self.uvarint(0) } else { self }
    }
}

/// Reads Kafka primitive types from a response body, failing (never panicking) on short input.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(
            self.remaining() >= n,
            "response too short: needed {n} bytes at {}, {} left",
            self.pos,
            self.remaining()
        );
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub fn uvarint(&mut self) -> Result<u64> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("varint longer than 10 bytes")
    }
    pub fn nullable_string(&mut self, flexible: bool) -> Result<Option<String>> {
        let len = if flexible {
            match self.uvarint()? {
                0 => return Ok(None),
                n => usize::try_from(n - 1)?,
            }
        } else {
            match self.i16()? {
                -1 => return Ok(None),
                n => usize::try_from(n).context("negative string length")?,
            }
        };
        Ok(Some(String::from_utf8_lossy(self.take(len)?).into_owned()))
    }
    pub fn string(&mut self, flexible: bool) -> Result<String> {
        self.nullable_string(flexible)?
            .context("null where a string was expected")
    }
    pub fn array_len(&mut self, flexible: bool) -> Result<usize> {
        if flexible {
            match self.uvarint()? {
                0 => bail!("null array"),
                n => Ok(usize::try_from(n - 1)?),
            }
        } else {
            usize::try_from(self.i32()?).context("negative array length")
        }
    }
    pub fn skip_tagged_fields(&mut self, flexible: bool) -> Result<()> {
        if !flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = usize::try_from(self.uvarint()?)?;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_values_when_writing_varints_should_read_them_back() -> Result<()> {
        let mut w = Writer::new();
        for v in [0, 1, 127, 128, 300, 16_384, u64::from(u32::MAX)] {
            w.uvarint(v);
        }
        let mut r = Reader::new(&w.buf);
        for v in [0, 1, 127, 128, 300, 16_384, u64::from(u32::MAX)] {
            assert_eq!(r.uvarint()?, v);
        }
        assert_eq!(r.remaining(), 0);
        Ok(())
    }
}
