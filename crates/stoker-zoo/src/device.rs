//! `--device` names → burn's dispatch device. GPU backends exist only in builds with their
//! feature; asking for one elsewhere is a clear error, not a silent fallback to the CPU.

use burn::BurnConfig;
use burn::prelude::Device;
use burn_std::config::RuntimeConfig;

/// Devices this build can run on, for messages.
pub fn available() -> Vec<&'static str> {
    let mut devices = vec!["cpu"];
    if cfg!(feature = "wgpu") {
        devices.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        devices.push("cuda");
    }
    devices
}

/// Waits for the device's queued work; a failure in it (memory, a lost device) is the error.
pub fn sync(device: &Device) -> anyhow::Result<()> {
    device
        .sync()
        .map_err(|e| anyhow::anyhow!("device failed: {e}"))
}

/// The device `name` names, with kernel fusion on or off for the process.
pub fn open(name: &str, fusion: bool) -> Result<Device, String> {
    if !fusion {
        disable_fusion()?;
    }
    parse_device(name)
}

/// burn's kernel fusion is compiled in (it applies to the cubecl backends, not the CPU's flex).
pub const FUSION: bool = cfg!(feature = "fusion");

/// Switches kernel fusion off for this process (`--no-fusion`): every queued op then runs as
/// its own kernel, as burn-fusion does once its exploration budget is spent — set here to 0.
/// For comparing numerics or isolating a fusion bug; must come before any device is used.
pub fn disable_fusion() -> Result<(), String> {
    let mut config = toml::Value::try_from(BurnConfig::from_current_dir().override_from_env())
        .map_err(|e| format!("burn config: {e}"))?;
    let set = config
        .as_table_mut()
        .map(|t| t.entry("fusion").or_insert(toml::Table::new().into()))
        .and_then(toml::Value::as_table_mut)
        .map(|t| t.entry("beam_search").or_insert(toml::Table::new().into()))
        .and_then(toml::Value::as_table_mut)
        .map(|t| t.insert("max_explorations".into(), 0.into()));
    let config: BurnConfig = set.ok_or("burn config: unexpected shape").and_then(|_| {
        config
            .try_into()
            .map_err(|_| "burn config: unexpected shape")
    })?;
    if BurnConfig::try_set(config) || !fusion_enabled() {
        Ok(())
    } else {
        Err(
            "--no-fusion: burn's configuration was already read; set it before using a device"
                .into(),
        )
    }
}

/// Kernel fusion is in effect for GPU devices of this process.
pub fn fusion_enabled() -> bool {
    FUSION && burn::runtime_config().fusion().beam_search.max_explorations != Some(0)
}

/// A GPU backend, whose work is queued: timing needs a sync, counters come from the driver.
pub fn is_gpu(name: &str) -> bool {
    matches!(name, "wgpu" | "cuda")
}

pub fn parse_device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        "wgpu" => wgpu(),
        "cuda" => cuda(),
        other => Err(format!(
            "--device {other}: unknown device (this build supports: {})",
            available().join(", ")
        )),
    }
}

fn missing(name: &str) -> String {
    format!(
        "--device {name}: this build lacks the `{name}` feature; rebuild with `--features {name}`"
    )
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device, String> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device, String> {
    Err(missing("wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, String> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, String> {
    Err(missing("cuda"))
}
