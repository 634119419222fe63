//! Delivery logs in other tools' formats: `mpcomm log export`.
//!
//! * [`shiviz`]: a ShiViz space-time diagram with vector clocks rebuilt from the logs.

pub mod shiviz;

use std::path::Path;

use anyhow::Context;

use crate::wire::log::LogView;

/// Read and check delivery logs for export.
pub fn read_logs(paths: &[impl AsRef<Path>]) -> anyhow::Result<Vec<shiviz::PeerLog>> {
    paths
        .iter()
        .map(|p| {
            let p = p.as_ref();
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            let log = LogView::parse(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not a valid delivery log: {e}", p.display()))?;
            Ok(shiviz::PeerLog {
                header: log.header.clone(),
                records: log.records().collect(),
            })
        })
        .collect()
}
