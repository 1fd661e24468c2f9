//! One timed step of a benchmark, whatever it runs: a closure, and the device to wait
//! for after it. The bottom of `bench/`: the configurations return it, the runner times it.

use tch::Device;

use crate::error::Result;

/// A ready-to-time step. Grad mode is the caller's: the runner turns it off except for
/// [`Mode::Backward`](super::Mode::Backward).
pub struct Workload {
    step: Box<dyn FnMut() -> Result<()>>,
    device: Device,
}

impl Workload {
    /// A workload of `step` on `device` (synchronised after each step).
    pub fn new(step: Box<dyn FnMut() -> Result<()>>, device: Device) -> Self {
        Self { step, device }
    }

    /// Runs one step and waits for the device to finish it.
    pub fn step(&mut self) -> Result<()> {
        (self.step)()?;
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
        Ok(())
    }
}
