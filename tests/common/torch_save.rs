//! Generated torch.save archives for the reader tests: a protocol-2 pickle of
//! `{key: _rebuild_tensor_v2(storage, offset, size, stride)}` and stored zip records.

use std::io::Write;

/// One tensor of the pickle: a view of storage record `storage` (`numel` elements of
/// the storage class `class`, e.g. `FloatStorage`).
pub struct Entry<'a> {
    pub key: &'a str,
    pub class: &'a str,
    pub storage: &'a str,
    pub numel: u64,
    pub offset: i32,
    pub size: &'a [i32],
    pub stride: &'a [i32],
}

/// Appends a BINUNICODE string.
pub fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Appends a tuple of BININTs.
pub fn int_tuple(out: &mut Vec<u8>, xs: &[i32]) {
    out.push(b'(');
    for x in xs {
        out.push(b'J');
        out.extend(x.to_le_bytes());
    }
    out.push(b't');
}

/// `data.pkl` of a state_dict holding `entries`, as torch.save writes it.
pub fn pickle(entries: &[Entry]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'('];
    for e in entries {
        unicode(&mut p, e.key);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        unicode(&mut p, "storage");
        p.extend(format!("ctorch\n{}\n", e.class).as_bytes());
        unicode(&mut p, e.storage);
        unicode(&mut p, "cpu");
        p.extend([0x8a, 8]);
        p.extend(e.numel.to_le_bytes());
        p.extend(b"tQ");
        p.push(b'J');
        p.extend(e.offset.to_le_bytes());
        int_tuple(&mut p, e.size);
        int_tuple(&mut p, e.stride);
        p.push(0x89);
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend(b"tR");
    }
    p.extend(b"u.");
    p
}

/// A zip archive of `records` (name, bytes), stored uncompressed as torch.save stores
/// them, in the order given (so duplicate names are possible).
pub fn zip(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in records {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}
