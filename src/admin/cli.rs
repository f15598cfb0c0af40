//! `mirrorgate cluster-links` and `mirrorgate mirrors`: a thin client of the admin
//! REST API whose flags and messages follow Confluent's `kafka-cluster-links` and
//! `kafka-mirrors`, so the commands operators know work as they are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args};
use serde_json::{json, Value};

use super::cli_output::OutputFormat;
use super::cli_wait::{self, Until};
use crate::replicator::link_config::{parse_inline, parse_properties};

#[derive(Args)]
pub struct Target {
    /// The mirrorgate admin listener.
    #[arg(
        long,
        env = "MIRRORGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    admin_url: String,
    /// File holding the admin API's bearer token ([admin] token_file); without it the
    /// token comes from MIRRORGATE_ADMIN_TOKEN, if set.
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    /// Accepted for compatibility with Confluent's tools; mirrorgate is reached at --admin-url.
    #[arg(long)]
    bootstrap_server: Option<String>,
}

impl Target {
    /// The flag's file wins over the environment; a token is never a flag value, which
    /// any user could read from the process list.
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.admin_token_file {
            return crate::config::admin::read_token_file(path)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("--admin-token-file: {e}"));
        }
        Ok(std::env::var("MIRRORGATE_ADMIN_TOKEN")
            .ok()
            .map(|t| t.trim_end().to_string())
            .filter(|t| !t.is_empty()))
    }
}

#[derive(Args)]
#[command(group(ArgGroup::new("action").required(true).args(["create", "list", "describe", "delete", "alter"])))]
pub struct ClusterLinks {
    #[arg(long)]
    create: bool,
    /// Change link configs (--config, --config-file, filter files, --delete-config).
    #[arg(long)]
    alter: bool,
    /// With --alter: link configs to remove (back to their defaults), k1,k2.
    #[arg(long)]
    delete_config: Option<String>,
    #[arg(long)]
    list: bool,
    #[arg(long)]
    describe: bool,
    #[arg(long)]
    delete: bool,
    #[arg(long)]
    link: Option<String>,
    /// Link configs as k=v,k2=v2.
    #[arg(long)]
    config: Option<String>,
    /// Link configs as a Java properties file.
    #[arg(long)]
    config_file: Option<PathBuf>,
    #[arg(long)]
    consumer_group_filters_json_file: Option<PathBuf>,
    #[arg(long)]
    topic_filters_json_file: Option<PathBuf>,
    #[arg(long)]
    validate_only: bool,
    #[arg(long)]
    force: bool,
    /// How --list and --describe print: Confluent's text layout, or the API's objects.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
#[command(group(ArgGroup::new("action").required(true).args(["create", "list", "describe", "pause", "resume", "promote", "failover", "alter", "truncate_and_restore", "reverse_and_start_mirror", "reverse_and_pause_mirror"])))]
pub struct Mirrors {
    #[arg(long)]
    create: bool,
    /// Change the mirrors' own settings (--config, --delete-config):
    /// mirror.replication.throttled.rate.
    #[arg(long)]
    alter: bool,
    /// With --alter: settings to remove, k1,k2.
    #[arg(long)]
    delete_config: Option<String>,
    #[arg(long)]
    list: bool,
    #[arg(long)]
    describe: bool,
    #[arg(long)]
    pause: bool,
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    promote: bool,
    #[arg(long)]
    failover: bool,
    /// On the old primary after a failover, with --link to the new primary: sets aside
    /// the records past each partition's last mirrored offset, then makes the topic a
    /// mirror of the new primary's again.
    #[arg(long)]
    pub(super) truncate_and_restore: bool,
    /// On a healthy bidirectional pair, with --link: a cut-over of the mirrors (fenced,
    /// no write lost) after which their source topics on the link's cluster are ACTIVE
    /// mirrors of them.
    #[arg(long)]
    pub(super) reverse_and_start_mirror: bool,
    /// As --reverse-and-start-mirror, the source topics there becoming PAUSED mirrors.
    #[arg(long)]
    pub(super) reverse_and_pause_mirror: bool,
    /// With --truncate-and-restore: the only partitions that may have records to set
    /// aside (0,1,...).
    #[arg(long)]
    pub(super) include_partitions: Option<String>,
    /// With --truncate-and-restore: print what would be set aside; with a reverse: check
    /// it and print its plan. Change nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// With --truncate-and-restore: the topic for the set-aside records (default:
    /// <topic>.mirrorgate-truncated).
    #[arg(long)]
    pub(super) set_aside_topic: Option<String>,
    /// With --truncate-and-restore: the new primary fleet's metadata topic, when its
    /// name differs from this fleet's.
    #[arg(long)]
    pub(super) source_metadata_topic: Option<String>,
    #[arg(long)]
    mirror_topic: Option<String>,
    /// With --create: topic configs for the mirror, k=v,k2=v2 (override the source's),
    /// and mirror.replication.throttled.rate; with --alter: that rate.
    #[arg(long)]
    config: Option<String>,
    #[arg(long)]
    source_topic: Option<String>,
    #[arg(long)]
    pub(super) link: Option<String>,
    /// For --describe: only these links (comma-separated).
    #[arg(long)]
    links: Option<String>,
    /// Comma-separated topics.
    #[arg(long)]
    topics: Option<String>,
    #[arg(long)]
    pending_stopped_only: bool,
    /// With --create: wait until the mirror caught up with its source; with --promote
    /// or --failover: until the mirrors stopped. Shows the progress meanwhile.
    #[arg(long)]
    wait: bool,
    /// How --list and --describe print: Confluent's text layout, or the API's objects.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    #[command(flatten)]
    target: Target,
}

pub(super) struct Api {
    base: String,
    /// The admin listener itself, for mirrorgate's own paths (`/admin/...`).
    root: String,
    agent: ureq::Agent,
    authorization: Option<String>,
}

impl Api {
    pub(super) fn new(target: &Target) -> anyhow::Result<Self> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        // The cluster id segment is not checked by mirrorgate; "-" keeps paths valid.
        let root = target.admin_url.trim_end_matches('/').to_string();
        let base = format!("{root}/kafka/v3/clusters/-");
        let authorization = target.token()?.map(|t| format!("Bearer {t}"));
        Ok(Self {
            base,
            root,
            agent,
            authorization,
        })
    }

    /// Every state-changing call says `Content-Type: application/json` (the admin API
    /// refuses it otherwise); a body-less POST sends `{}`.
    pub(super) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.call_url(method, format!("{}{path}", self.base), body)
    }

    fn call_url(&self, method: &str, url: String, body: Option<Value>) -> anyhow::Result<Value> {
        let auth = self.authorization.as_deref();
        let response = match (method, body) {
            ("GET", _) => with_auth(self.agent.get(&url), auth).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url), auth)
                .header("Content-Type", "application/json")
                .call(),
            ("PUT", Some(body)) => with_auth(self.agent.put(&url), auth).send_json(body),
            (_, body) => {
                with_auth(self.agent.post(&url), auth).send_json(body.unwrap_or_else(|| json!({})))
            }
        };
        let mut response = response.with_context(|| format!("cannot reach mirrorgate at {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            let message = value["message"].as_str().map(String::from).unwrap_or(text);
            bail!("{message}");
        }
        Ok(value)
    }
}

fn with_auth<B>(request: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(value) => request.header("Authorization", value),
        None => request,
    }
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn link_line(link: &Value) -> String {
    let line = format!(
        "Link name: '{}', link ID: '{}', remote cluster ID: '{}', local cluster ID: '{}', remote cluster available: '{}', link state: '{}'",
        link["link_name"].as_str().unwrap_or(""),
        link["link_id"].as_str().unwrap_or(""),
        link["source_cluster_id"].as_str().unwrap_or(""),
        link["destination_cluster_id"].as_str().unwrap_or(""),
        link["remote_cluster_available"].as_bool().unwrap_or(false),
        link["link_state"].as_str().unwrap_or(""),
    );
    match link["link_error_message"].as_str() {
        Some(error) => format!("{line}, link error message: '{error}'"),
        None => line,
    }
}

/// What the instance asked holds of the fleet's work.
fn fleet_line(fleet: &Value) -> String {
    let member = &fleet["member"];
    if member.is_null() {
        return "This instance does not replicate ([replicator] enabled = false).".into();
    }
    let partitions: Vec<&str> = fleet["mirror_partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let links: Vec<&str> = fleet["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "Fleet group: '{}', member ID: '{}', state: '{}', generation: '{}', members: '{}', links here: '{}', mirror partitions here: '{}'",
        member["group_id"].as_str().unwrap_or(""),
        member["member_id"].as_str().unwrap_or(""),
        member["state"].as_str().unwrap_or(""),
        member["generation"],
        member["members"],
        links.join(","),
        partitions.join(","),
    )
}

/// `  Task: ConsumerOffsetSync  State: IN_ERROR  Errors: CONSUMER_GROUP_IN_USE (g1, g2)`
fn task_line(task: &Value) -> String {
    let errors: Vec<String> = task["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} ({})",
                e["error_code"].as_str().unwrap_or(""),
                e["error_message"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut line = format!(
        "  Task: {}  State: {}",
        task["task_name"].as_str().unwrap_or(""),
        task["state"].as_str().unwrap_or("")
    );
    if !errors.is_empty() {
        line.push_str(&format!("  Errors: {}", errors.join(", ")));
    }
    line
}

/// Link configs from --config-file, --config and the filter files, in that order.
fn gathered_configs(args: &ClusterLinks) -> anyhow::Result<BTreeMap<String, String>> {
    let mut raw: BTreeMap<String, String> = BTreeMap::new();
    if let Some(file) = &args.config_file {
        raw.extend(parse_properties(&read(file)?).map_err(anyhow::Error::msg)?);
    }
    if let Some(inline) = &args.config {
        raw.extend(parse_inline(inline).map_err(anyhow::Error::msg)?);
    }
    if let Some(file) = &args.consumer_group_filters_json_file {
        raw.insert("consumer.offset.group.filters".into(), read(file)?);
    }
    if let Some(file) = &args.topic_filters_json_file {
        raw.insert("auto.create.mirror.topics.filters".into(), read(file)?);
    }
    Ok(raw)
}

pub fn cluster_links(args: ClusterLinks) -> anyhow::Result<()> {
    let api = Api::new(&args.target)?;
    let need_link = || args.link.clone().context("--link is required");
    if args.create {
        let link = need_link()?;
        let raw = gathered_configs(&args)?;
        let configs: Vec<Value> = raw
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        let path = format!(
            "/links?link_name={link}&validate_only={}",
            args.validate_only
        );
        api.call("POST", &path, Some(json!({ "configs": configs })))?;
        let what = if args.validate_only {
            "validation"
        } else {
            "creation"
        };
        println!("Cluster link '{link}' {what} successfully completed.");
    } else if args.list || args.describe {
        let links = api.call("GET", "/links", None)?;
        let shown: Vec<&Value> = links["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|link| {
                args.link
                    .as_deref()
                    .is_none_or(|l| Some(l) == link["link_name"].as_str())
            })
            .collect();
        if shown.is_empty() && args.link.is_some() {
            bail!(
                "Cluster link '{}' does not exist.",
                args.link.unwrap_or_default()
            );
        }
        if let Some(text) = args.output.render(&json!(shown))? {
            print!("{text}");
            return Ok(());
        }
        for link in shown {
            println!("{}", link_line(link));
            if args.describe {
                for (key, value) in link["configs"].as_object().into_iter().flatten() {
                    println!("  {key}={}", value.as_str().unwrap_or(""));
                }
                for task in link["tasks"].as_array().into_iter().flatten() {
                    println!("{}", task_line(task));
                }
            }
        }
        if args.describe {
            let fleet = api.call_url("GET", format!("{}/admin/fleet", api.root), None)?;
            println!("{}", fleet_line(&fleet));
        }
    } else if args.alter {
        let link = need_link()?;
        let mut data: Vec<Value> = gathered_configs(&args)?
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        for key in args.delete_config.as_deref().unwrap_or("").split(',') {
            if !key.trim().is_empty() {
                data.push(json!({ "name": key.trim(), "operation": "DELETE" }));
            }
        }
        if data.is_empty() {
            bail!("--alter needs --config, --config-file, a filters file or --delete-config");
        }
        let path = format!(
            "/links/{link}/configs:alter?validate_only={}",
            args.validate_only
        );
        api.call("PUT", &path, Some(json!({ "data": data })))?;
        let what = if args.validate_only {
            "validation"
        } else {
            "alter"
        };
        println!("Cluster link '{link}' {what} successfully completed.");
    } else if args.delete {
        let link = need_link()?;
        api.call(
            "DELETE",
            &format!("/links/{link}?force={}", args.force),
            None,
        )?;
        println!("Cluster link '{link}' deletion successfully completed.");
    }
    Ok(())
}

pub fn mirrors(args: Mirrors) -> anyhow::Result<()> {
    let api = Api::new(&args.target)?;
    let topics: Vec<String> = args
        .topics
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if args.create {
        let link = args.link.clone().context("--link is required")?;
        let mirror = args
            .mirror_topic
            .clone()
            .context("--mirror-topic is required")?;
        // Without --source-topic mirrorgate derives it (the mirror's name, less the
        // link's prefix).
        let source = args.source_topic.clone();
        let overrides = match &args.config {
            Some(inline) => parse_inline(inline).map_err(anyhow::Error::msg)?,
            None => BTreeMap::new(),
        };
        let configs: Vec<Value> = overrides
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        let body =
            json!({ "mirror_topic_name": mirror, "source_topic_name": source, "configs": configs });
        api.call("POST", &format!("/links/{link}/mirrors"), Some(body))?;
        println!("Created topic {mirror}.");
        if args.wait {
            cli_wait::wait(&api, &link, &[mirror], Until::CaughtUp)?;
        }
        return Ok(());
    }
    if args.list || args.describe {
        let link = args.link.clone().unwrap_or_else(|| "-".into());
        let mirrors = api.call("GET", &format!("/links/{link}/mirrors"), None)?;
        let wanted_links: Vec<&str> = args
            .links
            .as_deref()
            .map(|l| l.split(',').collect())
            .unwrap_or_default();
        let shown: Vec<&Value> = mirrors["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                topics.is_empty()
                    || topics
                        .iter()
                        .any(|t| Some(t.as_str()) == m["mirror_topic_name"].as_str())
            })
            .filter(|m| {
                wanted_links.is_empty()
                    || wanted_links.contains(&m["link_name"].as_str().unwrap_or(""))
            })
            .filter(|m| !args.pending_stopped_only || m["mirror_status"] == "PENDING_STOPPED")
            .collect();
        if let Some(text) = args.output.render(&json!(shown))? {
            print!("{text}");
            return Ok(());
        }
        if shown.is_empty() {
            println!("No mirror topics found.");
        }
        for m in shown {
            if args.list {
                println!("{}", m["mirror_topic_name"].as_str().unwrap_or(""));
            } else {
                print!("{}", describe(m));
            }
        }
        return Ok(());
    }
    if args.truncate_and_restore {
        return super::cli_restore::truncate_and_restore(&api, &args, topics);
    }
    if args.reverse_and_start_mirror || args.reverse_and_pause_mirror {
        let link = args.link.as_deref().context("a reverse needs --link")?;
        let reverse = if args.reverse_and_start_mirror {
            "START"
        } else {
            "PAUSE"
        };
        return super::cli_cutover::reverse(&api, link, topics, reverse, args.dry_run);
    }
    if topics.is_empty() && args.link.is_none() {
        bail!("Specify --topics or --link.");
    }
    if !topics.is_empty() && args.link.is_some() {
        bail!("Cannot specify both --topics and --link.");
    }
    if args.alter {
        return alter_mirrors(&api, &args, topics);
    }
    let (action, verb) = if args.pause {
        ("pause", "pausing")
    } else if args.resume {
        ("resume", "resuming")
    } else if args.promote {
        ("promote", "stopping")
    } else {
        ("failover", "stopping")
    };
    let link = args.link.clone().unwrap_or_else(|| "-".into());
    // The API changes only the topics it is given: --link means its mirrors as of now.
    let topics = if topics.is_empty() {
        let mirrors = api.call("GET", &format!("/links/{link}/mirrors"), None)?;
        let names: Vec<String> = mirrors["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["mirror_topic_name"].as_str().map(String::from))
            .collect();
        if names.is_empty() {
            // An unknown link is an error ("does not exist"), not an empty one.
            api.call("GET", &format!("/links/{link}"), None)?;
            println!("No mirror topics found.");
            return Ok(());
        }
        names
    } else {
        topics
    };
    if args.promote {
        println!(
            "Calculating max offset and ms lag for mirror topics: [{}]",
            topics.join(", ")
        );
    }
    let results = api.call(
        "POST",
        &format!("/links/{link}/mirrors:{action}"),
        Some(json!({ "mirror_topic_names": topics })),
    )?;
    let mut failed = false;
    for r in results["data"].as_array().into_iter().flatten() {
        let topic = r["mirror_topic_name"].as_str().unwrap_or("");
        match r["error_message"].as_str() {
            None => println!(
                "Request for {verb} topic {topic}'s mirror was successfully scheduled. Please use the describe command with the --pending-stopped-only option to monitor progress."
            ),
            Some(message) => {
                failed = true;
                eprintln!("Error for topic {topic}: org.apache.kafka.common.errors.InvalidRequestException: {message}");
            }
        }
    }
    if failed {
        bail!("some mirror topics were not changed");
    }
    if args.wait && (args.promote || args.failover) {
        cli_wait::wait(&api, &link, &topics, Until::Stopped)?;
    }
    Ok(())
}

/// `mirrors --alter --topics T,... [--link L] --config k=v --delete-config k`.
fn alter_mirrors(api: &Api, args: &Mirrors, topics: Vec<String>) -> anyhow::Result<()> {
    let mut data: Vec<Value> = match &args.config {
        Some(inline) => parse_inline(inline)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect(),
        None => Vec::new(),
    };
    for key in args.delete_config.as_deref().unwrap_or("").split(',') {
        if !key.trim().is_empty() {
            data.push(json!({ "name": key.trim(), "operation": "DELETE" }));
        }
    }
    if data.is_empty() {
        bail!("--alter needs --config or --delete-config");
    }
    let link = args.link.clone().unwrap_or_else(|| "-".into());
    let results = api.call(
        "PUT",
        &format!("/links/{link}/mirrors:alter"),
        Some(json!({ "mirror_topic_names": topics, "data": data })),
    )?;
    let mut failed = false;
    for r in results["data"].as_array().into_iter().flatten() {
        let topic = r["mirror_topic_name"].as_str().unwrap_or("");
        match r["error_message"].as_str() {
            None => println!("Mirror topic {topic} alter successfully completed."),
            Some(message) => {
                failed = true;
                eprintln!("Error for topic {topic}: org.apache.kafka.common.errors.InvalidRequestException: {message}");
            }
        }
    }
    if failed {
        bail!("some mirror topics were not changed");
    }
    Ok(())
}

/// Confluent's describe layout: a topic line, then a line per partition.
fn describe(m: &Value) -> String {
    let state_time = m["state_time_ms"].as_i64().unwrap_or(0);
    let mut out = format!(
        "Topic: {}\tLinkName: {}\tSourceTopic: {}\tState: {}\tStateTime: {}{}{}\n",
        m["mirror_topic_name"].as_str().unwrap_or(""),
        m["link_name"].as_str().unwrap_or(""),
        m["source_topic_name"].as_str().unwrap_or(""),
        m["mirror_status"].as_str().unwrap_or(""),
        format_ms(state_time),
        m["reason"]
            .as_str()
            .map(|r| format!("\tReason: {r}"))
            .unwrap_or_default(),
        m["throttled_rate"]
            .as_u64()
            .map(|r| format!("\tThrottledRate: {r}"))
            .unwrap_or_default(),
    );
    // Recorded when the mirror stopped: what truncate-and-restore keeps on the old source.
    let last_mirrored = |partition: &Value| {
        let found = m["last_mirrored_offsets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| &l["partition"] == partition);
        let Some(l) = found else {
            return String::new();
        };
        let epoch = l["source_leader_epoch"]
            .as_i64()
            .map(|e| format!("\tSourceLeaderEpoch: {e}"))
            .unwrap_or_default();
        format!("\tLastMirroredOffset: {}{epoch}", l["offset"])
    };
    let lags = m["mirror_lags"].as_array().cloned().unwrap_or_default();
    for p in &lags {
        out.push_str(&format!(
            "\tPartition: {}\tState: {}\tDestLogEndOffset: {}\tLastFetchSourceHighWatermark: {}\tLag: {}\tTimeSinceLastFetchMs: {}{}\n",
            p["partition"],
            m["mirror_status"].as_str().unwrap_or(""),
            p["dest_log_end_offset"],
            p["last_source_fetch_offset"],
            p["lag"],
            p["time_since_last_fetch_ms"],
            last_mirrored(&p["partition"]),
        ));
    }
    if lags.is_empty() {
        for l in m["last_mirrored_offsets"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "\tPartition: {}\tState: {}{}\n",
                l["partition"],
                m["mirror_status"].as_str().unwrap_or(""),
                last_mirrored(&l["partition"]),
            ));
        }
    }
    out
}

/// `2023-04-20 16:03:05` (UTC).
fn format_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_state_time() {
        assert_eq!(super::format_ms(1_681_974_185_000), "2023-04-20 07:03:05");
        assert_eq!(super::format_ms(0), "1970-01-01 00:00:00");
    }
}
