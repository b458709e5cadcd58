//! TorchScript models: opaque to HART (no layer structure), but their named
//! parameters are visible, so generic training, Hessian and fault paths work.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::Path;

use tch::{CModule, Device, Kind, Tensor};

use super::graph::Mode;
use super::info::ModelInfo;
use crate::error::{HartError, Result};

pub struct ScriptModel {
    module: RefCell<CModule>,
    mode: Cell<Option<Mode>>,
    /// Parameters `--freeze` holds fixed (no gradient tracking).
    frozen: HashSet<String>,
    pub info: ModelInfo,
}

impl ScriptModel {
    pub fn load(path: &Path, info: ModelInfo) -> Result<Self> {
        let module = CModule::load(path).map_err(|e| {
            HartError::data(
                path,
                format!(
                    "not a TorchScript archive (save with torch.jit.save; state dicts go in .safetensors): {}",
                    // libtorch appends a long "internal miniz error ..." explanation.
                    e.to_string()
                        .lines()
                        .next()
                        .unwrap_or("")
                        .split(". ")
                        .next()
                        .unwrap_or("")
                ),
            )
        })?;
        Ok(Self::wrap(module, info))
    }

    fn wrap(module: CModule, info: ModelInfo) -> Self {
        let m = ScriptModel {
            module: RefCell::new(module),
            mode: Cell::new(None),
            frozen: HashSet::new(),
            info,
        };
        // TorchScript loads parameters without gradient tracking turned on for training.
        for (_, t) in m.named_parameters() {
            if t.is_floating_point() && !t.requires_grad() {
                let _ = t.shallow_clone().set_requires_grad(true);
            }
        }
        m
    }

    /// An independent module with the current weights (not the file's: a
    /// storage format may have rewritten them), for work that writes weights
    /// in place beside readers of this one. libtorch offers no in-memory
    /// copy of a scripted module, so it goes through a temporary archive,
    /// loaded back onto `device` (where this one's weights live).
    pub fn deep_copy(&self, device: Device) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .suffix(".pt")
            .tempfile()
            .map_err(|e| HartError::io(std::env::temp_dir(), e))?;
        self.module.borrow().save(tmp.path())?;
        let module = CModule::load_on_device(tmp.path(), device)?;
        let mut copy = Self::wrap(module, self.info.clone());
        for name in &self.frozen {
            copy.set_frozen(name, true)?;
        }
        Ok(copy)
    }

    pub fn is_frozen(&self, name: &str) -> bool {
        self.frozen.contains(name)
    }

    /// Freezes a parameter or frees it again, in place (gradient tracking only).
    pub fn set_frozen(&mut self, name: &str, frozen: bool) -> Result<()> {
        let t = self
            .named_parameters()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| HartError::Model(format!("no parameter named {name}")))?;
        let _ = t.f_set_requires_grad(!frozen)?;
        if frozen {
            self.frozen.insert(name.to_string());
        } else {
            self.frozen.remove(name);
        }
        Ok(())
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if self.mode.get() != Some(mode) {
            let mut m = self.module.borrow_mut();
            match mode {
                Mode::Train => m.f_set_train()?,
                Mode::Eval => m.f_set_eval()?,
            }
            self.mode.set(Some(mode));
        }
        Ok(self.module.borrow().forward_ts(&[x])?)
    }

    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.module.borrow().named_parameters().unwrap_or_default()
    }

    pub fn to_device(&mut self, device: Device) -> Result<()> {
        self.module.get_mut().to(device, Kind::Float, false);
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("pt.tmp");
        self.module.borrow().save(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| HartError::io(path, e))
    }
}
