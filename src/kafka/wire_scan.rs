//! Stepping over the fields of a Kafka message without decoding it: the shared cursor
//! of the walks (`fetch_scan`, `produce_scan`). Every length is checked against the
//! bytes left before it is used, so a walk over hostile bytes fails; it never
//! allocates, loops on a forged count, or panics.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("version {0} of this message is not walked")]
    Version(i16),
    #[error("the message ends inside a field")]
    Truncated,
    #[error("the message has a malformed field")]
    Malformed,
}

/// A topic as a message names it: by name (older versions) or by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannedTopic<'a> {
    Name(&'a str),
    Id([u8; 16]),
}

/// A cursor over a message's fields that reads without allocating.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ScanError> {
        if n > self.buf.len() {
            return Err(ScanError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), ScanError> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn i16(&mut self) -> Result<i16, ScanError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ScanError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u32, ScanError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ScanError::Malformed)
    }

    /// An array's element count; None when null.
    pub(crate) fn array_len(&mut self, flexible: bool) -> Result<Option<usize>, ScanError> {
        let len = if flexible {
            i64::from(self.uvarint()?) - 1
        } else {
            i64::from(self.i32()?)
        };
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(ScanError::Malformed),
            // Each element takes at least one byte: a count beyond what is left is a lie,
            // refused before any loop runs that long.
            n if n as usize > self.buf.len() => Err(ScanError::Truncated),
            n => Ok(Some(n as usize)),
        }
    }

    pub(crate) fn string(&mut self, flexible: bool) -> Result<Option<&'a [u8]>, ScanError> {
        let len = if flexible {
            i64::from(self.uvarint()?) - 1
        } else {
            i64::from(self.i16()?)
        };
        self.sized(len)
    }

    pub(crate) fn bytes(&mut self, flexible: bool) -> Result<Option<&'a [u8]>, ScanError> {
        let len = if flexible {
            i64::from(self.uvarint()?) - 1
        } else {
            i64::from(self.i32()?)
        };
        self.sized(len)
    }

    pub(crate) fn sized(&mut self, len: i64) -> Result<Option<&'a [u8]>, ScanError> {
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(ScanError::Malformed),
            n => self
                .take(usize::try_from(n).map_err(|_| ScanError::Malformed)?)
                .map(Some),
        }
    }

    /// A nullable string, which must be UTF-8 (as for the decoder).
    pub(crate) fn utf8(&mut self, flexible: bool) -> Result<Option<&'a str>, ScanError> {
        self.string(flexible)?
            .map(|s| std::str::from_utf8(s).map_err(|_| ScanError::Malformed))
            .transpose()
    }

    /// A topic: its id when `by_id`, else its name (never null).
    pub(crate) fn topic(
        &mut self,
        by_id: bool,
        flexible: bool,
    ) -> Result<ScannedTopic<'a>, ScanError> {
        if by_id {
            let id = self
                .take(16)?
                .try_into()
                .map_err(|_| ScanError::Truncated)?;
            return Ok(ScannedTopic::Id(id));
        }
        let name = self.utf8(flexible)?.ok_or(ScanError::Malformed)?;
        Ok(ScannedTopic::Name(name))
    }

    pub(crate) fn skip_tagged_fields(&mut self) -> Result<(), ScanError> {
        let fields = self.uvarint()?;
        for _ in 0..fields {
            self.uvarint()?; // tag
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Ok(())
    }
}
