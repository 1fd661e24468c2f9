//! ggml's tensor types: their ids in a GGUF file, their names and their block sizes,
//! as gguf-py's `GGMLQuantizationType` and `GGML_QUANT_SIZES` (gguf 0.19) list them.
//!
//! The reader knows every type gguf-py knows, so that it can check each tensor's bytes
//! against the file and `attn inspect` can name the type of any tensor; which of them
//! can be dequantised is [`GgmlType::dequantisable`].

/// Elements in a k-quant super-block (ggml's `QK_K`).
pub(super) const QK_K: usize = 256;

/// A ggml tensor type, by its id in the file. The variant names are gguf-py's (and
/// ggml's), so `{:?}` prints the name a user sees in llama.cpp's and gguf-py's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)] // ggml's own names
pub enum GgmlType {
    /// float32.
    F32,
    /// float16.
    F16,
    /// Blocks of 32: a float16 scale `d`, 32 4-bit values `q`; `x = (q - 8) * d`.
    Q4_0,
    /// Blocks of 32: float16 `d` and `m`, 32 4-bit values; `x = q * d + m`.
    Q4_1,
    /// Blocks of 32: `d`, a fifth bit per value; `x = (q - 16) * d`.
    Q5_0,
    /// Blocks of 32: `d`, `m`, a fifth bit per value; `x = q * d + m`.
    Q5_1,
    /// Blocks of 32: a float16 scale `d`, 32 signed bytes `q`; `x = q * d`.
    Q8_0,
    /// Blocks of 32 with a sum term (not dequantised here).
    Q8_1,
    /// Super-blocks of 256: 2-bit values, 16 sub-blocks with 4-bit scales and mins.
    Q2_K,
    /// Super-blocks of 256: 3-bit values, 16 sub-blocks with 6-bit signed scales.
    Q3_K,
    /// Super-blocks of 256: 4-bit values, 8 sub-blocks with 6-bit scales and mins.
    Q4_K,
    /// Super-blocks of 256: 5-bit values, 8 sub-blocks with 6-bit scales and mins.
    Q5_K,
    /// Super-blocks of 256: 6-bit values, 16 sub-blocks with 8-bit signed scales.
    Q6_K,
    /// ggml's intermediate type for k-quant dot products (not dequantised here).
    Q8_K,
    /// An i-quant (not dequantised here).
    IQ2_XXS,
    /// An i-quant (not dequantised here).
    IQ2_XS,
    /// An i-quant (not dequantised here).
    IQ3_XXS,
    /// An i-quant (not dequantised here).
    IQ1_S,
    /// Blocks of 32: `d`, 32 4-bit indices into a fixed non-linear table of 16 values.
    IQ4_NL,
    /// An i-quant (not dequantised here).
    IQ3_S,
    /// An i-quant (not dequantised here).
    IQ2_S,
    /// Super-blocks of 256: IQ4_NL's table, 8 sub-blocks with 6-bit signed scales.
    IQ4_XS,
    /// int8 (not dequantised here).
    I8,
    /// int16 (not dequantised here).
    I16,
    /// int32 (not dequantised here).
    I32,
    /// int64 (not dequantised here).
    I64,
    /// float64 (not dequantised here).
    F64,
    /// An i-quant (not dequantised here).
    IQ1_M,
    /// bfloat16.
    BF16,
    /// A ternary type (not dequantised here).
    TQ1_0,
    /// A ternary type (not dequantised here).
    TQ2_0,
    /// Microscaling 4-bit floats (not dequantised here).
    MXFP4,
    /// NVIDIA's 4-bit floats (not dequantised here).
    NVFP4,
    /// 1-bit blocks of 128 (not dequantised here).
    Q1_0,
}

impl GgmlType {
    /// The type with ggml's id `id`, if gguf-py knows it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block), as gguf-py's `GGML_QUANT_SIZES`.
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        let k = QK_K as u64;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 | IQ4_NL => (32, 2 + 16),
            Q4_1 => (32, 2 + 2 + 16),
            Q5_0 => (32, 2 + 4 + 16),
            Q5_1 => (32, 2 + 2 + 4 + 16),
            Q8_0 => (32, 2 + 32),
            Q8_1 => (32, 4 + 4 + 32),
            Q2_K => (k, 2 + 2 + k / 16 + k / 4),
            Q3_K => (k, 2 + k / 4 + k / 8 + 12),
            Q4_K => (k, 2 + 2 + k / 2 + 12),
            Q5_K => (k, 2 + 2 + k / 2 + k / 8 + 12),
            Q6_K => (k, 2 + k / 2 + k / 4 + k / 16),
            Q8_K => (k, 4 + k + k / 8),
            IQ2_XXS => (k, 2 + k / 4),
            IQ2_XS => (k, 2 + k / 4 + k / 32),
            IQ3_XXS => (k, 2 + k / 4 + k / 8),
            IQ1_S => (k, 2 + k / 8 + k / 16),
            IQ3_S => (k, 2 + k / 4 + k / 8 + k / 32 + 4),
            IQ2_S => (k, 2 + k / 4 + k / 16),
            IQ4_XS => (k, 2 + 2 + k / 2 + k / 64),
            IQ1_M => (k, k / 8 + k / 16 + k / 32),
            TQ1_0 => (k, 2 + 4 * 13),
            TQ2_0 => (k, 2 + 64),
            MXFP4 => (32, 1 + 16),
            NVFP4 => (64, 4 + 32),
            Q1_0 => (128, 2 + 16),
        }
    }

    /// Whether [`crate::io::Gguf::tensor`] can turn this type into float32.
    pub fn dequantisable(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16
                | BF16
                | Q4_0
                | Q4_1
                | Q5_0
                | Q5_1
                | Q8_0
                | Q2_K
                | Q3_K
                | Q4_K
                | Q5_K
                | Q6_K
                | IQ4_NL
                | IQ4_XS
        )
    }

    /// The names of the [`GgmlType::dequantisable`] types, for errors.
    pub fn dequantisable_names() -> String {
        let names: Vec<String> = (0..64)
            .filter_map(GgmlType::from_id)
            .filter(|t| t.dequantisable())
            .map(|t| format!("{t:?}"))
            .collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sizes_are_ggmls() {
        let known: Vec<u32> = (0..64)
            .filter(|&id| GgmlType::from_id(id).is_some())
            .collect();
        assert_eq!(known.len(), 34);
        // The sizes llama.cpp's ggml.c lists (`type_traits`), spelled out once more.
        assert_eq!(GgmlType::Q2_K.block(), (256, 84));
        assert_eq!(GgmlType::Q3_K.block(), (256, 110));
        assert_eq!(GgmlType::Q4_K.block(), (256, 144));
        assert_eq!(GgmlType::Q5_K.block(), (256, 176));
        assert_eq!(GgmlType::Q6_K.block(), (256, 210));
        assert_eq!(GgmlType::IQ4_NL.block(), (32, 18));
        assert_eq!(GgmlType::IQ4_XS.block(), (256, 136));
    }
}
