//! `mirrors --truncate-and-restore`: Confluent's flags, mirrorgate's report (a line per
//! partition: its last mirrored offset, its end here, the records set aside).

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::cli::{Api, Mirrors};

pub(super) fn truncate_and_restore(
    api: &Api,
    args: &Mirrors,
    topics: Vec<String>,
) -> anyhow::Result<()> {
    let link = args
        .link
        .clone()
        .context("--truncate-and-restore needs --link (a link to the new primary)")?;
    if topics.is_empty() {
        bail!("--truncate-and-restore needs --topics");
    }
    let include: Option<Vec<i32>> = args
        .include_partitions
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<i32>().with_context(|| {
                        format!("--include-partitions: '{p}' is not a partition number")
                    })
                })
                .collect::<anyhow::Result<Vec<i32>>>()
        })
        .transpose()?;
    let body = json!({
        "mirror_topic_names": topics,
        "include_partitions": include,
        "dry_run": args.dry_run,
        "set_aside_topic": args.set_aside_topic,
        "source_metadata_topic": args.source_metadata_topic,
    });
    let results = api.call(
        "POST",
        &format!("/links/{link}/mirrors:truncate-and-restore"),
        Some(body),
    )?;
    let mut failed = false;
    for r in results["data"].as_array().into_iter().flatten() {
        let topic = r["mirror_topic_name"].as_str().unwrap_or("");
        if let Some(message) = r["error_message"].as_str() {
            failed = true;
            eprintln!("Error for topic {topic}: org.apache.kafka.common.errors.InvalidRequestException: {message}");
            continue;
        }
        print!("{}", report(r, args.dry_run));
    }
    if failed {
        bail!("some topics were not restored");
    }
    Ok(())
}

fn report(r: &Value, dry_run: bool) -> String {
    let topic = r["mirror_topic_name"].as_str().unwrap_or("");
    let set_aside = r["set_aside_topic"].as_str().unwrap_or("");
    let mut out = String::new();
    let mut total = 0;
    for p in r["partitions"].as_array().into_iter().flatten() {
        total += p["set_aside_records"].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "\tPartition: {}\tLastMirroredOffset: {}\tLogEndOffset: {}\tSetAsideRecords: {}\n",
            p["partition"], p["last_mirrored_offset"], p["log_end_offset"], p["set_aside_records"],
        ));
    }
    let head = if dry_run {
        format!("Topic {topic}: {total} records would be set aside to {set_aside}; nothing was changed.\n")
    } else {
        let how = if r["kept_in_place"].as_bool() == Some(true) {
            " (in place: nothing past its last mirrored offsets)"
        } else {
            ""
        };
        format!(
            "Topic {topic}: {total} records set aside to {set_aside}; it is now a mirror of {}{how}.\n",
            r["source_topic_name"].as_str().unwrap_or("")
        )
    };
    head + &out
}
