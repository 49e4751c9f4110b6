//! `--device` names → burn's dispatch device. GPU backends exist only in builds with their
//! feature; asking for one elsewhere is a clear error, not a silent fallback to the CPU.

use burn::BurnConfig;
use burn::prelude::Device;
use burn_std::config::RuntimeConfig;

use crate::error::{Error, Result};

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
pub fn sync(device: &Device) -> Result<()> {
    device.sync().map_err(Error::from_execution)
}

/// The device `name` names, with kernel fusion on or off for the process.
pub fn open(name: &str, fusion: bool) -> Result<Device> {
    open_nth(name, fusion, 0)
}

/// [`open`] for the `local`-th process of a distributed run on this machine: a GPU backend
/// takes the machine's GPU `local` (0: the default one); the CPU is one device for all (the
/// processes split its threads).
pub fn open_nth(name: &str, fusion: bool, local: usize) -> Result<Device> {
    if !fusion {
        disable_fusion()?;
    }
    match name {
        "wgpu" => wgpu(local),
        "cuda" => cuda(local),
        other => parse_device(other),
    }
}

/// burn's kernel fusion is compiled in (it applies to the cubecl backends, not the CPU's flex).
pub const FUSION: bool = cfg!(feature = "fusion");

/// Switches kernel fusion off for this process (`--no-fusion`): every queued op then runs as
/// its own kernel, as burn-fusion does once its exploration budget is spent — set here to 0.
/// For comparing numerics or isolating a fusion bug; must come before any device is used.
pub fn disable_fusion() -> Result<()> {
    let unexpected = || Error::BurnConfig("unexpected shape".into());
    let mut config = toml::Value::try_from(BurnConfig::from_current_dir().override_from_env())
        .map_err(|e| Error::BurnConfig(e.to_string()))?;
    config
        .as_table_mut()
        .map(|t| t.entry("fusion").or_insert(toml::Table::new().into()))
        .and_then(toml::Value::as_table_mut)
        .map(|t| t.entry("beam_search").or_insert(toml::Table::new().into()))
        .and_then(toml::Value::as_table_mut)
        .map(|t| t.insert("max_explorations".into(), 0.into()))
        .ok_or_else(unexpected)?;
    let config: BurnConfig = config.try_into().map_err(|_| unexpected())?;
    if BurnConfig::try_set(config) || !fusion_enabled() {
        Ok(())
    } else {
        Err(Error::ConfigAlreadyRead)
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

pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        "wgpu" => wgpu(0),
        "cuda" => cuda(0),
        other => Err(Error::UnknownDevice {
            name: other.into(),
            supported: available().join(", "),
        }),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu(index: usize) -> Result<Device> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(match index {
        0 => DeviceKind::DefaultDevice,
        n => DeviceKind::DiscreteGpu(n),
    }))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_index: usize) -> Result<Device> {
    Err(Error::MissingFeature("wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device> {
    Err(Error::MissingFeature("cuda"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_missing_devices_say_what_this_build_has() {
        let msg = parse_device("tpu").unwrap_err().to_string();
        assert!(
            msg.contains("--device tpu: unknown device") && msg.contains("cpu"),
            "{msg}"
        );
        if !cfg!(feature = "cuda") {
            let msg = parse_device("cuda").unwrap_err().to_string();
            assert!(msg.contains("rebuild with `--features cuda`"), "{msg}");
        }
        assert!(parse_device("cpu").is_ok());
    }
}
