//! A `Read + Seek` over a file read by position in aligned blocks, for the `zip` crate:
//! it finds an archive's end by seeking back one byte at a time over up to 64 KiB, which
//! through a `BufReader` (whose seeks drop its buffer) would read the tail of the file
//! thousands of times. Here a seek moves a number; a read outside the current block
//! reads the block around it.

use std::io::{Read, Seek, SeekFrom};

use crate::io::stored::ReadAt;

/// Bytes read at a time, at multiples of this.
const BLOCK: u64 = 64 << 10;

/// [`ReadAt`] as `Read + Seek`, `len` bytes long.
pub(crate) struct BlockReader<'a, R: ?Sized> {
    src: &'a R,
    len: u64,
    pos: u64,
    start: u64,
    buf: Vec<u8>,
}

impl<'a, R: ReadAt + ?Sized> BlockReader<'a, R> {
    pub(crate) fn new(src: &'a R, len: u64) -> Self {
        BlockReader {
            src,
            len,
            pos: 0,
            start: 0,
            buf: Vec::new(),
        }
    }
}

impl<R: ReadAt + ?Sized> Read for BlockReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let end = self.start + self.buf.len() as u64;
        if self.pos < self.start || self.pos >= end {
            self.start = self.pos - self.pos % BLOCK;
            let n = BLOCK.min(self.len - self.start) as usize;
            self.buf.resize(n, 0);
            self.src.read_exact_at(&mut self.buf, self.start)?;
        }
        let at = (self.pos - self.start) as usize;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt + ?Sized> Seek for BlockReader<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}
