//! How a front end's command fails, one type for the CLI and (next) the service: each variant is
//! a kind of failure with a typed cause, and the kind alone decides the README's exit status and
//! the HTTP status a service answers with.

use crate::apply::ApplyError;
use crate::discover::DiscoverError;
use crate::formats::InputError;
use crate::ledger::LedgerError;
use crate::verify::VerifyError;

/// A flavor Nova would refuse: the file, Nova's exception name, the sentence.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {code}: {message}")]
pub struct RequestRefused {
    pub file: String,
    pub code: String,
    pub message: String,
}

/// A command-line value (or a combination of them) that cannot be used: the message names the
/// flag and the value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

/// Output that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {target}: {source}")]
pub struct OutputError {
    pub target: String,
    pub source: std::io::Error,
}

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A file's content is invalid (file, field, value).
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Request(#[from] RequestRefused),
    #[error(transparent)]
    Flag(#[from] FlagError),
    /// The machine (or a recorded tree) could not be read as a topology.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// A `--plugin` file that cannot be read or is not a usable component: bad input.
    #[error("{0:#}")]
    PluginLoad(anyhow::Error),
    /// The plugin trapped, ran out of fuel or memory.
    #[error("{0:#}")]
    Plugin(anyhow::Error),
    /// The plugin answered something the host's checks refuse.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The ledger could not be opened, read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The kernel (or a cgroup file, or a program to start) refused to apply a placement.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl Failure {
    /// The README's exit status: 2 invalid input (and output that cannot be written), 3 the
    /// plugin failed, 4 the placement could not be applied.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Input(_) | Failure::Request(_) | Failure::Flag(_) | Failure::Discover(_) | Failure::PluginLoad(_) => 2,
            Failure::Output(_) | Failure::Ledger(_) => 2,
            Failure::Plugin(_) | Failure::Verify(_) => 3,
            Failure::Apply(_) => 4,
        }
    }

    /// The failure's code, as the service's `error` field and the Python module's exception name.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Input(_) | Failure::Flag(_) => "InvalidInput",
            Failure::Request(_) => "RequestRefused",
            Failure::Discover(_) => "DiscoverFailed",
            Failure::PluginLoad(_) => "PluginLoad",
            Failure::Plugin(_) => "PluginFailed",
            Failure::Verify(_) => "PluginAnswerRefused",
            Failure::Output(_) => "OutputFailed",
            Failure::Ledger(_) => "LedgerFailed",
            Failure::Apply(_) => "ApplyFailed",
        }
    }

    /// The HTTP status a service answers with: the caller's input is a 400, the machine's or the
    /// output's trouble a 500, a policy that failed or lied a 502 (the service stands in front of it).
    pub fn http_status(&self) -> u16 {
        match self {
            Failure::Input(_) | Failure::Request(_) | Failure::Flag(_) | Failure::PluginLoad(_) => 400,
            Failure::Discover(_) | Failure::Output(_) | Failure::Ledger(_) | Failure::Apply(_) => 500,
            Failure::Plugin(_) | Failure::Verify(_) => 502,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_one_exit_code_and_one_status() {
        let input = Failure::from(InputError { file: "h.json".into(), message: "field x".into() });
        let plugin = Failure::Plugin(anyhow::anyhow!("trapped"));
        let output = Failure::from(OutputError { target: "stdout".into(), source: std::io::Error::other("full") });
        assert_eq!((input.exit_code(), input.http_status()), (2, 400));
        assert_eq!((plugin.exit_code(), plugin.http_status()), (3, 502));
        assert_eq!((output.exit_code(), output.http_status()), (2, 500));
        assert_eq!(output.to_string(), "cannot write stdout: full");
        assert_eq!((input.code(), plugin.code(), output.code()), ("InvalidInput", "PluginFailed", "OutputFailed"));
    }
}
