//! Incremental decoding with a KV cache (work in progress).
