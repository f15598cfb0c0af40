//! ACL sync (`acl.sync.enable`): every `acl.sync.ms` the instance running the link's
//! jobs lists the source's ACLs that `acl.filters` select, creates on the destination
//! those it lacks, and deletes there those this link created that the source no longer
//! has. Which ones the link created is kept in the metadata topic (`acls/<link>`),
//! written before they are created, so an instance taking the link over knows them;
//! an ACL an operator made on the destination is never deleted, even when it matches.

use std::collections::BTreeSet;

use anyhow::Context;

use super::source::{Source, SourceSettings};
use super::{store, Destination};
use crate::config::DestinationConfig;
use crate::kafka::acls::{self, AclBinding, AclFilter};
use crate::kafka::client::KafkaConnection;
use crate::kafka::kept::KeptConnection;

/// ACLs one link syncs at most (its record must fit the metadata topic's value limit).
pub const MAX_SYNCED_ACLS: usize = 5_000;

/// What one round does, from what each side has and what the link created before.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AclPlan {
    pub create: Vec<AclBinding>,
    pub delete: Vec<AclBinding>,
    /// What the link will have created once the round is done.
    pub created: BTreeSet<AclBinding>,
}

/// Create what the source has and the destination lacks; delete what the link created
/// that the source dropped. A binding both sides had before the link is not the link's.
pub fn plan(
    source: &BTreeSet<AclBinding>,
    dest: &BTreeSet<AclBinding>,
    created: &BTreeSet<AclBinding>,
) -> AclPlan {
    let create: Vec<AclBinding> = source.difference(dest).cloned().collect();
    let delete: Vec<AclBinding> = created
        .iter()
        .filter(|b| dest.contains(*b) && !source.contains(*b))
        .cloned()
        .collect();
    let created = created
        .intersection(source)
        .cloned()
        .chain(create.iter().cloned())
        .collect();
    AclPlan {
        create,
        delete,
        created,
    }
}

/// What a round did.
#[derive(Debug, Default)]
pub struct AclSyncReport {
    pub created: usize,
    pub deleted: usize,
    pub errors: Vec<String>,
}

/// The sync's memory between rounds, owned by the link's actor: what it last stored
/// (the catalog may not have read it back yet).
#[derive(Debug, Default)]
pub struct AclSync {
    stored: Option<BTreeSet<AclBinding>>,
    /// Kept from one round to the next (a round every `acl.sync.ms`).
    source_conn: KeptConnection<SourceSettings>,
    dest_conn: KeptConnection<DestinationConfig>,
}

impl AclSync {
    /// One round. `recorded`: the catalog's `acls/<link>` record. An error is returned
    /// when a cluster cannot be read at all; single ACLs that fail are in `errors`.
    pub async fn round(
        &mut self,
        source: &Source,
        dest: &Destination,
        link: &str,
        filters: &[AclFilter],
        recorded: Option<&BTreeSet<AclBinding>>,
    ) -> anyhow::Result<AclSyncReport> {
        let on_source = self
            .source_conn
            .call(
                source.settings(),
                source.connect_any(),
                |mut conn| async move {
                    let described = describe_all(&mut conn, filters).await;
                    (conn, described)
                },
            )
            .await
            .context("ACL sync: describe the source's ACLs")?;
        if on_source.len() > MAX_SYNCED_ACLS {
            anyhow::bail!(
                "ACL sync: {} ACLs match acl.filters on the source, more than the {MAX_SYNCED_ACLS} a link syncs; narrow the filters",
                on_source.len()
            );
        }
        let on_dest = self
            .dest_conn
            .call(dest.settings(), dest.connect_any(), |mut conn| async move {
                let described = describe_all(&mut conn, filters).await;
                (conn, described)
            })
            .await
            .context("ACL sync: describe the destination's ACLs")?;
        let before = self
            .stored
            .clone()
            .or_else(|| recorded.cloned())
            .unwrap_or_default();
        let plan = plan(&on_source, &on_dest, &before);
        let mut report = AclSyncReport::default();
        if !plan.create.is_empty() {
            // Written first: an instance dying right after creating them still leaves
            // them known as the link's.
            let ahead: BTreeSet<AclBinding> = before.union(&plan.created).cloned().collect();
            self.store(dest, link, ahead).await?;
            // Creating a binding that exists changes nothing: safe to repeat.
            let creations = plan.create.as_slice();
            let results = self
                .dest_conn
                .call(dest.settings(), dest.connect_any(), |mut conn| async move {
                    let created = acls::create(&mut conn, creations).await;
                    (conn, created)
                })
                .await
                .context("ACL sync: create ACLs on the destination")?;
            for (binding, error) in plan.create.iter().zip(results) {
                match error {
                    None => report.created += 1,
                    Some(e) => report.errors.push(format!("creating {binding}: {e}")),
                }
            }
        }
        let mut created = plan.created;
        if !plan.delete.is_empty() {
            let deletions = plan.delete.as_slice();
            let results = self
                .dest_conn
                .call(dest.settings(), dest.connect_any(), |mut conn| async move {
                    let deleted = acls::delete(&mut conn, deletions).await;
                    (conn, deleted)
                })
                .await
                .context("ACL sync: delete ACLs on the destination")?;
            for (binding, error) in plan.delete.iter().zip(results) {
                match error {
                    None => report.deleted += 1,
                    Some(e) => {
                        // Still the link's: deleted on a later round.
                        created.insert(binding.clone());
                        report.errors.push(format!("deleting {binding}: {e}"));
                    }
                }
            }
        }
        if created != before {
            self.store(dest, link, created).await?;
        }
        let labels = [("link", link.to_string())];
        metrics::counter!("mirrorgate_acl_sync_changes_total", &labels)
            .increment((report.created + report.deleted) as u64);
        Ok(report)
    }

    async fn store(
        &mut self,
        dest: &Destination,
        link: &str,
        created: BTreeSet<AclBinding>,
    ) -> anyhow::Result<()> {
        store::put_synced_acls(dest, link, &created)
            .await
            .context("ACL sync: record the link's ACLs in the metadata topic")?;
        self.stored = Some(created);
        Ok(())
    }
}

/// Every binding any of `filters` selects.
async fn describe_all(
    conn: &mut KafkaConnection,
    filters: &[AclFilter],
) -> Result<BTreeSet<AclBinding>, acls::AclError> {
    let mut all = BTreeSet::new();
    for filter in filters {
        all.extend(acls::describe(conn, filter).await?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{plan, AclBinding};

    fn acl(name: &str) -> AclBinding {
        AclBinding {
            resource_type: 2,
            resource_name: name.into(),
            pattern_type: 3,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission_type: 3,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<AclBinding> {
        names.iter().map(|n| acl(n)).collect()
    }

    #[test]
    fn what_the_source_has_is_created_and_what_it_dropped_is_deleted_if_the_link_made_it() {
        // a: on both, the link's. b: new on the source. c: dropped on the source, the
        // link's. d: dropped on the source but the operator's (never the link's).
        let plan = plan(&set(&["a", "b"]), &set(&["a", "c", "d"]), &set(&["a", "c"]));
        assert_eq!(plan.create, vec![acl("b")]);
        assert_eq!(plan.delete, vec![acl("c")]);
        assert_eq!(plan.created, set(&["a", "b"]));
    }

    #[test]
    fn an_acl_both_sides_had_is_not_adopted_and_one_deleted_by_hand_comes_back() {
        let plan = plan(&set(&["a", "b"]), &set(&["a"]), &set(&["b"]));
        assert_eq!(plan.create, vec![acl("b")]);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.created, set(&["b"]), "a stays the operator's");
    }

    #[test]
    fn nothing_to_do_when_both_sides_agree() {
        let plan = plan(&set(&["a"]), &set(&["a"]), &set(&["a"]));
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.created, set(&["a"]));
    }
}
