//! `mdp call SERVICE [FRAME…]`: one request with the library's sync
//! [`Client`], the reply frames printed.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, ValueEnum};
use majordomo_worker::client::{Client, ClientConfig, DEFAULT_RETRIES};

use crate::client::DEFAULT_BROKER;
use crate::error::{client_error, CliError, CliResult};
use crate::frames::Framing;

const AFTER_HELP: &str =
    "Output: raw writes the frames as --frames maps them (raw: concatenated); hex writes one
line per frame; json writes one line per reply, an array whose items are the frames as
strings when they are UTF-8, else {\"hex\": \"...\"}.
Before sending, mdp call asks the broker whether SERVICE has workers (brokers that cannot
tell are simply sent the request): if none comes within --timeout it says \"no worker for
`SERVICE`\" and sends nothing, so no request is left queued for a worker started later. With a list of
brokers (a,b), each attempt that gets no reply moves on to the next one.
Exit status: 0 a reply came (an error reply from a worker is a reply), 1 no worker for the
service, or no reply within --timeout after --retries (or a reply that is not valid MDP),
2 usage error (bad flag, service name or input), 3 any other failure (socket, I/O),
4 nothing answers at the broker endpoint(s) (no connection within --timeout).

Example:
  mdp call echo hello world            # two frames; prints helloworld
  echo hi | mdp call echo              # stdin is the body (one frame with --frames raw)
  printf 'a\\nb\\n' | mdp call echo --frames lines --output json   # [\"a\",\"b\"]
  mdp call echo --output hex -- -x     # a frame that starts with '-'
  mdp call echo hi --broker tcp://b1:5555,tcp://b2:5555   # fails over to b2";

/// Send one request to SERVICE and print the reply.
#[derive(Debug, ClapArgs)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The service to call.
    pub service: String,

    /// Body frames; none, or a single "-", reads the body from stdin, split per --frames.
    #[arg(value_name = "FRAME")]
    pub body: Vec<OsString>,

    /// Broker endpoint, or a comma-separated list to fail over between.
    #[arg(long, env = "MDP_BROKER", default_value = DEFAULT_BROKER)]
    pub broker: String,

    /// How stdin maps to body frames, and reply frames to output with --output raw: raw,
    /// lines, nul or len (as for `mdp worker`).
    #[arg(long = "frames", value_enum, default_value_t = Framing::Raw)]
    pub frames_mode: Framing,

    /// How long each attempt waits for the reply (e.g. 2.5s, 300ms).
    #[arg(long, default_value = "2500ms", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Attempts after the first, each on a new socket (a retried request may run twice).
    #[arg(long, default_value_t = DEFAULT_RETRIES)]
    pub retries: u32,

    /// How to print the reply: raw, hex or json.
    #[arg(long, value_enum, default_value_t = Output::Raw)]
    pub output: Output,

    /// Send the request this many times, one after the other, printing each reply.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
}

/// The `--output` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The frames as --frames maps them.
    Raw,
    /// One line of lowercase hex per frame.
    Hex,
    /// One JSON array per reply.
    Json,
}

/// Sends the request `--count` times; stops at the first failure.
pub fn run(args: Args) -> CliResult {
    let body = body(&args)?;
    let config = ClientConfig::new(&args.broker)
        .timeout(args.timeout)
        .retries(args.retries);
    let mut client = Client::connect(config).map_err(client_error)?;
    let started = Instant::now();
    let mut stdout = std::io::stdout().lock();
    for _ in 0..args.count {
        let reply = client.request(&args.service, &body).map_err(client_error)?;
        stdout.write_all(&render(&reply, args.output, args.frames_mode)?)?;
        stdout.flush()?;
    }
    if args.count > 1 && std::io::stderr().is_terminal() {
        let elapsed = started.elapsed();
        eprintln!("mdp call: {} replies in {elapsed:.2?}", args.count);
    }
    Ok(())
}

/// The body frames: the arguments, or stdin split per `--frames`.
fn body(args: &Args) -> Result<Vec<Vec<u8>>, CliError> {
    if !args.body.is_empty() && args.body != ["-"] {
        return Ok(args.body.iter().cloned().map(OsString::into_vec).collect());
    }
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    args.frames_mode
        .decode(&input)
        .map_err(|error| CliError::Usage(format!("stdin: {error}")))
}

/// The reply as `output` prints it.
fn render(reply: &[Vec<u8>], output: Output, framing: Framing) -> Result<Vec<u8>, CliError> {
    match output {
        Output::Raw => framing
            .encode(reply)
            .map_err(|error| CliError::Failed(format!("reply: {error}"))),
        Output::Hex => Ok(reply
            .iter()
            .map(|frame| hex(frame) + "\n")
            .collect::<String>()
            .into_bytes()),
        Output::Json => {
            let frames: Vec<serde_json::Value> = reply.iter().map(|f| json_frame(f)).collect();
            let mut line = serde_json::Value::Array(frames).to_string().into_bytes();
            line.push(b'\n');
            Ok(line)
        }
    }
}

/// A frame as a JSON string when it is UTF-8, else `{"hex": "..."}`.
pub fn json_frame(frame: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(frame) {
        Ok(text) => serde_json::Value::from(text),
        Err(_) => serde_json::json!({ "hex": hex(frame) }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn each_output_format_prints_the_frames_as_documented() {
        let reply = frames(&[b"hi", b"\xff\x00"]);
        let text = |output, framing| render(&reply, output, framing).unwrap();
        assert_eq!(text(Output::Raw, Framing::Raw), b"hi\xff\x00");
        assert_eq!(text(Output::Raw, Framing::Lines), b"hi\n\xff\x00\n");
        assert_eq!(text(Output::Hex, Framing::Raw), b"6869\nff00\n");
        assert_eq!(
            text(Output::Json, Framing::Raw),
            b"[\"hi\",{\"hex\":\"ff00\"}]\n"
        );
    }
}
