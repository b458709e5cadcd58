//! `device=`, as the CLI's `--device`: cpu, cuda or cuda:N, checked
//! against the GPUs libtorch sees before any work starts.

use hart::HartError;
use tch::Device;

pub fn parse(s: &str) -> hart::Result<Device> {
    let device = match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Device::Cuda(i),
            _ => {
                return Err(HartError::Invalid(format!(
                    "unknown device {s:?} (cpu, cuda or cuda:N)"
                )))
            }
        },
    };
    if let Device::Cuda(i) = device {
        let n = tch::Cuda::device_count();
        if i as i64 >= n {
            return Err(HartError::Invalid(format!(
                "--device {s}: CUDA is not available here ({n} GPU(s) visible)"
            )));
        }
    }
    Ok(device)
}
