//! NVIDIA's own counters through NVML (the `nvml` feature, on with `cuda` and `wgpu`): GPU
//! utilisation and device memory in use, the figures `nvidia-smi` shows. The library is loaded
//! at run time, so the feature builds anywhere and falls back where no NVIDIA driver is present.

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

/// Counters of GPU 0, the device `--device cuda` and wgpu's default adapter pick first.
pub struct NvmlCounters {
    nvml: Nvml,
}

impl NvmlCounters {
    pub fn open() -> Result<Self, NvmlError> {
        let nvml = Nvml::init()?;
        nvml.device_by_index(0)?;
        Ok(Self { nvml })
    }

    pub fn total_memory(&self) -> Option<u64> {
        let device = self.nvml.device_by_index(0).ok()?;
        Some(device.memory_info().ok()?.total)
    }

    /// GPU utilisation (%) and device memory in use (bytes), each where NVML answers.
    pub fn read(&mut self) -> (Option<f64>, Option<u64>) {
        let device = self.nvml.device_by_index(0).ok();
        let percent = device
            .as_ref()
            .and_then(|d| d.utilization_rates().ok())
            .map(|u| f64::from(u.gpu));
        let memory = device.and_then(|d| d.memory_info().ok()).map(|m| m.used);
        (percent, memory)
    }
}
