//! The process's log, configured by `--log-path`/`--level`/`--show-level`/
//! `--show-log-origin` at start and by `PUT /logger` later: a `tracing`
//! subscriber whose output layer is swapped in place (a reload handle).
//!
//! Unlike Firecracker, the default destination is stderr, not stdout: stdout
//! carries the guest's serial console, which clients read.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

use super::model::Logger;

/// A logger setting that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    /// The level is not one Firecracker knows.
    #[error("logger.level {0:?} is not one of Error, Warning, Info, Debug, Trace, Off")]
    Level(String),
    /// The log file could not be opened.
    #[error("logger.log_path {path}: {source}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The subscriber could not be changed or installed.
    #[error("the logger could not be (re)configured: {0}")]
    Install(String),
}

/// The level, a global filter: reloading a per-layer filter is not
/// supported by `tracing-subscriber` (it panics on the next event).
type LevelLayer = reload::Layer<LevelFilter, Registry>;
/// What the output layer sits on.
type Filtered = tracing_subscriber::layer::Layered<LevelLayer, Registry>;
type OutputLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Changes the process's log output at run time.
#[derive(Clone)]
pub struct LogControl {
    level: reload::Handle<LevelFilter, Registry>,
    output: reload::Handle<OutputLayer, Filtered>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl").finish_non_exhaustive()
    }
}

/// Firecracker's level names (any case) as a filter.
pub fn parse_level(level: &str) -> Result<LevelFilter, LoggerError> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "error" => LevelFilter::ERROR,
        "warning" | "warn" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        "off" => LevelFilter::OFF,
        _ => return Err(LoggerError::Level(level.to_string())),
    })
}

fn open(path: &Path) -> Result<std::fs::File, LoggerError> {
    // Non-blocking, as Firecracker opens it: a named pipe with no reader
    // fails at once (ENXIO) instead of hanging the API.
    OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| LoggerError::Open {
            path: path.to_owned(),
            source,
        })
}

fn level_of(config: &Logger) -> Result<LevelFilter, LoggerError> {
    parse_level(config.level.as_deref().unwrap_or("Warning"))
}

fn output_layer(config: &Logger) -> Result<OutputLayer, LoggerError> {
    let writer = match &config.log_path {
        Some(path) => BoxMakeWriter::new(Arc::new(open(path)?)),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let origin = config.show_log_origin.unwrap_or(false);
    Ok(tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .with_level(config.show_level.unwrap_or(false))
        .with_file(origin)
        .with_line_number(origin)
        .with_target(origin)
        .boxed())
}

impl LogControl {
    /// Installs the process's subscriber with `config`.
    pub fn install(config: &Logger) -> Result<Self, LoggerError> {
        let (level, level_handle) = reload::Layer::new(level_of(config)?);
        let (output, output_handle) = reload::Layer::new(output_layer(config)?);
        tracing_subscriber::registry()
            .with(level)
            .with(output)
            .try_init()
            .map_err(|e| LoggerError::Install(e.to_string()))?;
        Ok(Self {
            level: level_handle,
            output: output_handle,
        })
    }

    /// Applies `config` (`PUT /logger`): destination, level, decorations.
    pub fn apply(&self, config: &Logger) -> Result<(), LoggerError> {
        let level = level_of(config)?;
        let layer = output_layer(config)?;
        self.output
            .reload(layer)
            .map_err(|e| LoggerError::Install(e.to_string()))?;
        self.level
            .reload(level)
            .map_err(|e| LoggerError::Install(e.to_string()))?;
        if let Some(module) = &config.module {
            tracing::info!(%module, "logger.module is accepted and ignored: every module logs");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_firecracker_names() {
        assert_eq!(parse_level("Warning").ok(), Some(LevelFilter::WARN));
        assert_eq!(parse_level("debug").ok(), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("OFF").ok(), Some(LevelFilter::OFF));
        let e = parse_level("loud").expect_err("unknown level");
        assert!(e.to_string().contains("\"loud\""));
    }
}
