//! `mirrorgate cutover`: starts a link's cut-over through the admin API (or dry-runs it)
//! and follows it to its end, a line per step, with the lag on a terminal. Run again
//! after a crash (of this command or of any instance), it follows the cut-over already
//! under way instead of starting another: the cut-over's state is in the metadata topic.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use super::cli::{Api, Target};
use super::cli_output::OutputFormat;

/// How often the cut-over is looked at while followed.
const POLL: Duration = Duration::from_millis(500);
/// How long the admin API may stay unreachable while a cut-over is followed (an
/// instance restarting); the cut-over itself goes on regardless.
const UNREACHABLE_FOR: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct Cutover {
    #[arg(long)]
    link: String,
    /// Comma-separated mirror topics of the link (default: every ACTIVE one).
    #[arg(long)]
    topics: Option<String>,
    /// Fence only once the mirrors are at most this many records behind in all (the
    /// rest is copied under the fence).
    #[arg(long, default_value_t = 10_000)]
    max_lag_records: i64,
    /// Longest the fence may hold (parked writes wait at most this long) before the
    /// cut-over aborts.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Check lag, the fleet and the source without fencing; print the plan.
    #[arg(long, conflicts_with_all = ["abort", "describe"])]
    dry_run: bool,
    /// Abort the link's cut-over (lifting its fence) unless it is already promoting.
    #[arg(long, conflicts_with = "describe")]
    abort: bool,
    /// Show the link's latest cut-over and exit.
    #[arg(long)]
    describe: bool,
    /// How --describe prints: text, or the API's object.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    #[command(flatten)]
    target: Target,
}

pub fn cutover(args: Cutover) -> anyhow::Result<()> {
    let api = Api::new(&args.target)?;
    let path = format!("/links/{}/cutover", args.link);
    if args.describe {
        let view = api.call("GET", &path, None)?;
        match args.output.render(&view)? {
            Some(text) => print!("{text}"),
            None => print!("{}", describe(&view)),
        }
        return Ok(());
    }
    if args.abort {
        let view = api.call("POST", &format!("{path}:abort"), None)?;
        print!("{}", describe(&view));
        return Ok(());
    }
    let topics: Vec<String> = args
        .topics
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let body = json!({
        "topics": topics,
        "max_lag_records": args.max_lag_records,
        "timeout_ms": args.timeout_ms,
        "dry_run": args.dry_run,
    });
    if args.dry_run {
        let plan = api.call("POST", &path, Some(body))?;
        print!("{}", dry_run(&plan));
        return Ok(());
    }
    let under_way = api
        .call("GET", &path, None)
        .ok()
        .filter(|v| !is_final(v["step"].as_str().unwrap_or("")));
    let started = match under_way {
        Some(view) => {
            println!(
                "Cut-over {} of link '{}' is under way (step {}); following it.",
                view["id"].as_str().unwrap_or(""),
                args.link,
                view["step"].as_str().unwrap_or("")
            );
            view
        }
        None => {
            let view = api.call("POST", &path, Some(body))?;
            println!(
                "Cut-over {} of link '{}' started for {}.",
                view["id"].as_str().unwrap_or(""),
                args.link,
                names(&view["topics"])
            );
            view
        }
    };
    follow(&api, &path, started)
}

/// `mirrors --reverse-and-start-mirror` / `--reverse-and-pause-mirror`: a cut-over of
/// `topics` (with the defaults of `cutover`) that also turns their source topics on the
/// link's cluster into mirrors of them; followed like one.
pub(super) fn reverse(
    api: &Api,
    link: &str,
    topics: Vec<String>,
    reverse: &str,
    dry_run: bool,
) -> anyhow::Result<()> {
    let path = format!("/links/{link}/cutover");
    let body = json!({ "topics": topics, "reverse": reverse, "dry_run": dry_run });
    if dry_run {
        let plan = api.call("POST", &path, Some(body))?;
        print!("{}", self::dry_run(&plan));
        return Ok(());
    }
    let view = api.call("POST", &path, Some(body))?;
    println!(
        "Reverse {} of link '{link}' started for {}.",
        view["id"].as_str().unwrap_or(""),
        names(&view["topics"])
    );
    follow(api, &path, view)
}

/// Polls the cut-over until it is DONE (Ok) or ABORTED (an error with its reason).
fn follow(api: &Api, path: &str, started: Value) -> anyhow::Result<()> {
    let id = started["id"].as_str().unwrap_or("").to_string();
    let terminal = std::io::stdout().is_terminal();
    let begun = Instant::now();
    let mut last_step = String::new();
    let mut unreachable_since: Option<Instant> = None;
    let mut view = started;
    loop {
        let step = view["step"].as_str().unwrap_or("").to_string();
        if step != last_step {
            if terminal {
                print!("\r\x1b[K");
            }
            println!(
                "[{:>6.1}s] {}{}",
                begun.elapsed().as_secs_f64(),
                step_text(&step),
                view["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            last_step = step.clone();
        } else if terminal {
            let lag = view["total_lag"]
                .as_i64()
                .map_or("?".to_string(), |l| l.to_string());
            let confirmed = confirmations(&view);
            print!("\r\x1b[K  lag {lag} records, fence confirmed by {confirmed}");
            std::io::stdout().flush().ok();
        }
        match step.as_str() {
            "DONE" => {
                let reversed = match view["reverse"].as_str() {
                    Some("START") => "; their source topics on the link's cluster are ACTIVE mirrors of them",
                    Some("PAUSE") => "; their source topics on the link's cluster are PAUSED mirrors of them",
                    _ => "",
                };
                println!(
                    "Cut-over of {} completed in {:.1} s: the topics are writable on the destination{reversed}.",
                    names(&view["topics"]),
                    begun.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            "ABORTED" => bail!(
                "the cut-over was aborted ({}); the topics are still mirrors and no parked write was lost",
                view["reason"].as_str().unwrap_or("no reason given")
            ),
            _ => {}
        }
        std::thread::sleep(POLL);
        match api.call("GET", path, None) {
            Ok(next) => {
                unreachable_since = None;
                if next["id"].as_str() != Some(id.as_str()) {
                    bail!(
                        "the link's cut-over was replaced by another one ({})",
                        next["id"]
                    );
                }
                view = next;
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNREACHABLE_FOR {
                    return Err(e).context(
                        "cannot follow the cut-over (it goes on; run the command again to follow it)",
                    );
                }
            }
        }
    }
}

fn is_final(step: &str) -> bool {
    matches!(step, "DONE" | "ABORTED")
}

fn step_text(step: &str) -> String {
    match step {
        "WAITING_FOR_LAG" => "1/5 waiting for the mirrors' lag to fall under the limit".into(),
        "FENCING" => "2/5 fencing: every instance parks Produce to the topics and confirms".into(),
        "VERIFYING" => {
            "3/5 verifying: the source stands still and the mirrors reach its end".into()
        }
        "SYNCING" => "4/5 final sync of consumer offsets and configs, then promote".into(),
        "REVERSING" => "released: parked and new writes go to the destination; the source topics on the link's cluster become mirrors".into(),
        "DONE" => "5/5 released: parked and new writes go to the destination".into(),
        "ABORTED" => "aborted, the fence is lifted".into(),
        other => other.to_string(),
    }
}

fn names(topics: &Value) -> String {
    let names: Vec<&str> = topics
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    names.join(", ")
}

/// "1/2 (a; b waiting)" of the live instances.
fn confirmations(view: &Value) -> String {
    let live: Vec<&Value> = view["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["live"].as_bool() == Some(true))
        .collect();
    let done = live
        .iter()
        .filter(|i| i["confirmed"].as_bool() == Some(true))
        .count();
    format!("{done}/{} live instance(s)", live.len())
}

fn describe(view: &Value) -> String {
    let mut out = format!(
        "Cut-over: {}\tLink: {}\tStep: {}\tTopics: {}\tTimeoutMs: {}\tMaxLagRecords: {}\n",
        view["id"].as_str().unwrap_or(""),
        view["link_name"].as_str().unwrap_or(""),
        view["step"].as_str().unwrap_or(""),
        names(&view["topics"]),
        view["timeout_ms"],
        view["max_lag_records"],
    );
    if let Some(reason) = view["reason"].as_str() {
        out.push_str(&format!("\tReason: {reason}\n"));
    }
    for i in view["instances"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\tInstance: {}\tLive: {}\tConfirmed: {}\n",
            i["instance_id"].as_str().unwrap_or(""),
            i["live"],
            i["confirmed"],
        ));
    }
    out
}

fn dry_run(plan: &Value) -> String {
    let mut out = format!(
        "Dry run of a cut-over of link '{}' ({}); nothing is fenced.\n",
        plan["link_name"].as_str().unwrap_or(""),
        names(&plan["topics"])
    );
    for line in plan["plan"].as_array().into_iter().flatten() {
        out.push_str(&format!("{}\n", line.as_str().unwrap_or("")));
    }
    for (partition, lag) in plan["lag"].as_object().into_iter().flatten() {
        out.push_str(&format!("\tLag: {partition}\t{lag}\n"));
    }
    for moving in plan["source_moving"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\tSource moving: {}\n",
            moving.as_str().unwrap_or("")
        ));
    }
    for group in plan["source_groups"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\tGroup on the source: {}\n",
            group.as_str().unwrap_or("")
        ));
    }
    out
}
