//! The `mdp` binary itself: help, completions, usage errors.

use assert_cmd::Command;

fn mdp() -> Command {
    Command::cargo_bin("mdp").expect("the mdp binary")
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_mdp()"),
        ("zsh", "#compdef mdp"),
        ("fish", "complete -c mdp"),
    ] {
        let output = mdp().args(["completions", shell]).output().expect("run");
        assert!(output.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
    }
}

#[test]
fn a_bad_flag_is_a_usage_error_with_exit_code_2() {
    let output = mdp().args(["--no-such-flag"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    let output = mdp().args(["completions", "tcsh"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn every_subcommand_help_gives_an_example() {
    let help = mdp().arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(!subcommands.is_empty(), "{help}");
    for subcommand in subcommands {
        let output = mdp().args([subcommand, "--help"]).output().expect("run");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("Example"),
            "`mdp {subcommand} --help` shows no example"
        );
    }
}
