//! `hart._hart`: the compiled half of the `hart` Python package. It holds
//! only conversions and calls into the engine (`hart-engine`), as
//! `hart-cli` does for the command line; the user-facing API, exporting
//! torch modules and building DataFrames live in `python/hart/*.py`.
//! Imported by `hart/__init__.py` after `import torch`, so the libtorch this
//! library links is the one torch already loaded.

mod attack;
mod call;
mod campaign;
mod compress;
mod data;
mod device;
mod errors;
mod eval;
mod experiment;
mod hessian;
mod landscape;
mod model;
mod sweep;
mod train;

use pyo3::prelude::*;

#[pymodule]
mod _hart {
    #[pymodule_export]
    use super::attack::attack;
    #[pymodule_export]
    use super::campaign::campaign;
    #[pymodule_export]
    use super::compress::{prune, quantize};
    #[pymodule_export]
    use super::data::Data;
    #[pymodule_export]
    use super::eval::evaluate;
    #[pymodule_export]
    use super::experiment::experiment;
    #[pymodule_export]
    use super::hessian::hessian;
    #[pymodule_export]
    use super::landscape::landscape;
    #[pymodule_export]
    use super::model::describe_model;
    #[pymodule_export]
    use super::sweep::sweep;
    #[pymodule_export]
    use super::train::train;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
