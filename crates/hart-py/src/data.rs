//! `hart._hart.Data`: a data set in the engine's form (u8 NCHW images and
//! labels), read once from a named or path data set as `--dataset` reads it,
//! or built from arrays the Python side checked and converted.

use std::path::PathBuf;
use std::sync::Arc;

use hart::data::{self, DataSpec, Dataset, Pixels, Split};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;

use crate::{call, errors};

/// A data set held by the engine; shared, never copied, by the calls it is passed to.
#[pyclass(frozen, module = "hart._hart")]
pub struct Data {
    pub inner: Arc<Dataset>,
}

#[pymethods]
impl Data {
    /// Reads `dataset` (a name or a path, as `--dataset` takes it).
    #[staticmethod]
    #[pyo3(signature = (dataset, split="test", limit=None, data_dir=None, image_size=224))]
    fn named(
        py: Python<'_>,
        dataset: String,
        split: &str,
        limit: Option<usize>,
        data_dir: Option<PathBuf>,
        image_size: usize,
    ) -> PyResult<Data> {
        let split: Split = split.parse().map_err(|e| errors::to_py(py, e))?;
        let spec = DataSpec {
            dataset,
            split,
            limit,
            data_dir,
            image_size,
        };
        let ds = call::run(py, None, |_| data::load(&spec))?;
        Ok(Data { inner: Arc::new(ds) })
    }

    /// Images as a C-contiguous buffer of `shape` (N, C, H, W), uint8 pixels
    /// (0..=255, fed as x/255) or float32 ones the Python side checked to lie
    /// in [0, 1] (fed as they are, no rounding to bytes), and int64 labels,
    /// each below `num_classes`.
    #[staticmethod]
    fn arrays(
        py: Python<'_>,
        name: String,
        images: &Bound<'_, PyAny>,
        shape: (usize, usize, usize, usize),
        labels: &Bound<'_, PyAny>,
        num_classes: usize,
    ) -> PyResult<Data> {
        let images = match PyBuffer::<u8>::get(images) {
            Ok(bytes) => Pixels::U8(bytes.to_vec(py)?),
            Err(_) => Pixels::F32(PyBuffer::<f32>::get(images)?.to_vec(py)?),
        };
        let labels = PyBuffer::<i64>::get(labels)?.to_vec(py)?;
        let (n, c, h, w) = shape;
        if images.len() != n * c * h * w || labels.len() != n {
            return Err(errors::invalid(
                py,
                format!(
                    "data: {} pixels and {} labels do not make {n} images of {c}×{h}×{w}",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= num_classes) {
            return Err(errors::invalid(
                py,
                format!("data: label {bad} outside 0..{num_classes}"),
            ));
        }
        Ok(Data {
            inner: Arc::new(Dataset {
                name,
                images,
                channels: c,
                height: h,
                width: w,
                labels,
                num_classes,
                class_names: (0..num_classes).map(|i| i.to_string()).collect(),
                source: "tensors passed from Python".into(),
            }),
        })
    }

    #[getter]
    fn name(&self) -> String {
        self.inner.name.clone()
    }

    /// (N, C, H, W).
    #[getter]
    fn shape(&self) -> (usize, usize, usize, usize) {
        let d = &self.inner;
        (d.len(), d.channels, d.height, d.width)
    }

    /// How the engine read it (what its errors say after "read as").
    #[getter]
    fn source(&self) -> String {
        self.inner.source.clone()
    }

    #[getter]
    fn num_classes(&self) -> usize {
        self.inner.num_classes
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        let (n, c, h, w) = self.shape();
        format!(
            "Data({:?}, {n} images of {c}×{h}×{w}, {} classes)",
            self.inner.name, self.inner.num_classes
        )
    }
}
