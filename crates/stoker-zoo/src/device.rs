//! `--device` names → burn's dispatch device. GPU backends exist only in builds with their
//! feature; asking for one elsewhere is a clear error, not a silent fallback to the CPU.

use burn::prelude::Device;

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
