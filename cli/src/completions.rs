//! `mdp completions SHELL`: shell completion scripts, from clap's own definition of the tool.

use clap::Args as ClapArgs;
use clap_complete::Shell;

use crate::error::CliResult;

/// Print a completion script for SHELL.
///
/// Example: `mdp completions bash > ~/.local/share/bash-completion/completions/mdp`
#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Example:\n  mdp completions bash > ~/.local/share/bash-completion/completions/mdp\n  mdp completions zsh > \"${fpath[1]}/_mdp\""
)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// Writes the script for `command`, the whole tool as clap defines it, to stdout.
pub fn run(args: Args, mut command: clap::Command) -> CliResult {
    clap_complete::generate(args.shell, &mut command, "mdp", &mut std::io::stdout());
    Ok(())
}
