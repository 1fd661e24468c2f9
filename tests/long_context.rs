//! Long context never materialises the T x T scores: libtorch's dispatcher picks the
//! flash kernel for the long suite's call, and the memory a long causal call adds stays
//! far below what the scores alone would take. (One test in this binary, so no other
//! test's allocations share the process while it measures.)

use tch::{Device, Kind, Tensor};
use tch_attention::attention::functional::{scaled_dot_product_attention, SdpaOptions};
use tch_attention::bench::memory;
use tch_attention::doctor::sdp_backend_name;

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "measures memory through /proc/self (clear_refs, VmHWM), which only Linux has"
)]
fn long_causal_attention_uses_the_flash_kernel_and_no_t_by_t_memory() {
    let _guard = tch::no_grad_guard();
    // The long suite's shape: B=1, 12 heads, T=8192, hs=64 (float32, CPU).
    let q = Tensor::zeros([1, 12, 8192, 64], (Kind::Float, Device::Cpu));
    let choice =
        Tensor::internal_fused_sdp_choice(&q, &q, &q, None::<Tensor>, 0.0, true, None, false);
    assert_eq!(sdp_backend_name(choice), "flash_attention");
    drop(q);

    // A smaller call, actually run: T=2048 would need 12 x 2048^2 x 4 B = 192 MiB for
    // the scores alone.
    let (h, t, hs) = (12, 2048, 64);
    let q = Tensor::randn([1, h, t, hs], (Kind::Float, Device::Cpu));
    let k = Tensor::randn([1, h, t, hs], (Kind::Float, Device::Cpu));
    let v = Tensor::randn([1, h, t, hs], (Kind::Float, Device::Cpu));
    let options = SdpaOptions {
        is_causal: true,
        ..SdpaOptions::default()
    };
    // On Linux the process may always write its own clear_refs: failing here means the
    // measurement is broken, not that the test should pass unmeasured.
    let before = memory::reset_peak().expect("/proc/self/clear_refs is writable");
    let out = scaled_dot_product_attention(&q, &k, &v, &options).unwrap();
    let added = memory::peak().unwrap() - before;
    assert_eq!(out.size(), [1, h, t, hs]);
    let scores_mib = (h * t * t * 4) as f64 / (1024.0 * 1024.0);
    assert!(
        added < scores_mib / 4.0,
        "added {added:.1} MiB; the scores alone would be {scores_mib:.0} MiB"
    );
}
