//! `--device` names → burn's dispatch device.

use burn::prelude::Device;

/// Devices this build can run on, for messages.
pub const DEVICES: &[&str] = &["cpu"];

pub fn parse_device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        "wgpu" | "cuda" => Err(format!(
            "--device {name}: this build lacks the `{name}` feature; rebuild with `--features {name}`"
        )),
        other => Err(format!(
            "--device {other}: unknown device (this build supports: {})",
            DEVICES.join(", ")
        )),
    }
}
