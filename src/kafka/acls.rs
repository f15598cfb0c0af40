//! A cluster's ACLs: bindings as DescribeAcls lists them, filters as Confluent's
//! `acl.filters` writes them, and the calls that describe, create and delete them.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use super::client::{ClientError, KafkaConnection};

/// v1 is the first with pattern types (PREFIXED); every 2.x+ broker takes it.
const ACLS_VERSION: i16 = 1;
/// Longest resource name, principal or host a binding may hold here.
pub const MAX_ACL_FIELD: usize = 4_096;

const ANY: i8 = 1;
const RESOURCE_TYPES: &[(&str, i8)] = &[
    ("any", 1),
    ("topic", 2),
    ("group", 3),
    ("cluster", 4),
    ("transactional_id", 5),
    ("delegation_token", 6),
    ("user", 7),
];
const PATTERN_TYPES: &[(&str, i8)] = &[("any", 1), ("match", 2), ("literal", 3), ("prefixed", 4)];
const OPERATIONS: &[(&str, i8)] = &[
    ("any", 1),
    ("all", 2),
    ("read", 3),
    ("write", 4),
    ("create", 5),
    ("delete", 6),
    ("alter", 7),
    ("describe", 8),
    ("cluster_action", 9),
    ("describe_configs", 10),
    ("alter_configs", 11),
    ("idempotent_write", 12),
    ("create_tokens", 13),
    ("describe_tokens", 14),
];
const PERMISSION_TYPES: &[(&str, i8)] = &[("any", 1), ("deny", 2), ("allow", 3)];

/// One ACL: a resource pattern and an access entry, by Kafka's codes.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclBinding {
    /// A concrete binding (no ANY or MATCH), with bounded fields: what a broker lists
    /// and can create. Anything else read from outside is refused.
    pub fn is_valid(&self) -> bool {
        let concrete =
            |code: i8, table: &[(&str, i8)]| code != ANY && table.iter().any(|(_, c)| *c == code);
        let field = |s: &str| !s.is_empty() && s.len() <= MAX_ACL_FIELD;
        concrete(self.resource_type, RESOURCE_TYPES)
            && matches!(self.pattern_type, 3 | 4)
            && concrete(self.operation, OPERATIONS)
            && concrete(self.permission_type, PERMISSION_TYPES)
            && field(&self.resource_name)
            && field(&self.principal)
            && field(&self.host)
    }
}

impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} on {} '{}' ({}) from {}",
            name_of(PERMISSION_TYPES, self.permission_type),
            self.principal,
            name_of(OPERATIONS, self.operation),
            name_of(RESOURCE_TYPES, self.resource_type),
            self.resource_name,
            name_of(PATTERN_TYPES, self.pattern_type),
            self.host
        )
    }
}

fn name_of(table: &[(&str, i8)], code: i8) -> String {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("#{code}"), |(n, _)| n.to_ascii_uppercase())
}

/// Which ACLs a filter selects; `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FiltersJson {
    acl_filters: Vec<FilterJson>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilterJson {
    resource_filter: ResourceJson,
    #[serde(default)]
    access_filter: AccessJson,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResourceJson {
    resource_type: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    pattern_type: Option<String>,
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AccessJson {
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    permission_type: Option<String>,
}

/// Parses Confluent's `acl.filters` JSON: `{"aclFilters":[{"resourceFilter":
/// {"resourceType","name","patternType"},"accessFilter":{"principal","host",
/// "operation","permissionType"}}]}`. Names are case-insensitive; a missing pattern
/// type, operation or permission type means ANY. Every problem is reported.
pub fn parse_filters(json: &str) -> Result<Vec<AclFilter>, String> {
    let parsed: FiltersJson = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if parsed.acl_filters.is_empty() {
        return Err("aclFilters: at least one filter".into());
    }
    let mut errors = Vec::new();
    let mut code = |table: &[(&str, i8)], what: &str, value: Option<&str>| -> i8 {
        let Some(value) = value else {
            return ANY;
        };
        let wanted = value.to_ascii_lowercase();
        match table.iter().find(|(n, _)| *n == wanted) {
            Some((_, c)) => *c,
            None => {
                let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                errors.push(format!(
                    "{what}: '{value}' is not one of {}",
                    names.join(", ")
                ));
                ANY
            }
        }
    };
    let filters: Vec<AclFilter> = parsed
        .acl_filters
        .into_iter()
        .map(|f| AclFilter {
            resource_type: code(
                RESOURCE_TYPES,
                "resourceType",
                Some(&f.resource_filter.resource_type),
            ),
            resource_name: f.resource_filter.name,
            pattern_type: code(
                PATTERN_TYPES,
                "patternType",
                f.resource_filter.pattern_type.as_deref(),
            ),
            principal: f.access_filter.principal,
            host: f.access_filter.host,
            operation: code(
                OPERATIONS,
                "operation",
                f.access_filter.operation.as_deref(),
            ),
            permission_type: code(
                PERMISSION_TYPES,
                "permissionType",
                f.access_filter.permission_type.as_deref(),
            ),
        })
        .collect();
    match errors.is_empty() {
        true => Ok(filters),
        false => Err(errors.join("; ")),
    }
}

/// The error of an ACL call, as the broker gave it.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{message}")]
    Broker { code: i16, message: String },
}

fn broker_error(code: i16, message: Option<&StrBytes>) -> AclError {
    let message = match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(m) => format!("{m} (error {code})"),
        None => super::groups::error_name(code),
    };
    AclError::Broker { code, message }
}

/// The bindings `filter` selects on the cluster. A binding the broker lists that is
/// not a concrete one (a newer broker's code) is left out.
pub async fn describe(
    conn: &mut KafkaConnection,
    filter: &AclFilter,
) -> Result<Vec<AclBinding>, AclError> {
    let text = |s: &Option<String>| s.as_ref().map(|s| StrBytes::from_string(s.clone()));
    let request = DescribeAclsRequest::default()
        .with_resource_type_filter(filter.resource_type)
        .with_resource_name_filter(text(&filter.resource_name))
        .with_pattern_type_filter(filter.pattern_type)
        .with_principal_filter(text(&filter.principal))
        .with_host_filter(text(&filter.host))
        .with_operation(filter.operation)
        .with_permission_type(filter.permission_type);
    let response = conn.call(&request, ACLS_VERSION).await?;
    if response.error_code != 0 {
        return Err(broker_error(
            response.error_code,
            response.error_message.as_ref(),
        ));
    }
    Ok(response
        .resources
        .into_iter()
        .flat_map(|resource| {
            resource.acls.into_iter().map(move |acl| AclBinding {
                resource_type: resource.resource_type,
                resource_name: resource.resource_name.to_string(),
                pattern_type: resource.pattern_type,
                principal: acl.principal.to_string(),
                host: acl.host.to_string(),
                operation: acl.operation,
                permission_type: acl.permission_type,
            })
        })
        .filter(AclBinding::is_valid)
        .collect())
}

/// Creates `bindings`: the error of each, in order (`None`: created).
pub async fn create(
    conn: &mut KafkaConnection,
    bindings: &[AclBinding],
) -> Result<Vec<Option<String>>, ClientError> {
    let request = CreateAclsRequest::default().with_creations(
        bindings
            .iter()
            .map(|b| {
                AclCreation::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
                    .with_resource_pattern_type(b.pattern_type)
                    .with_principal(StrBytes::from_string(b.principal.clone()))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission_type)
            })
            .collect(),
    );
    let response = conn.call(&request, ACLS_VERSION).await?;
    let results = response.results.into_iter();
    Ok(outcomes(
        bindings.len(),
        results.map(|r| (r.error_code, r.error_message)).collect(),
    ))
}

/// Deletes exactly `bindings` (each as a filter matching only itself): the error of
/// each, in order (`None`: deleted, or already gone).
pub async fn delete(
    conn: &mut KafkaConnection,
    bindings: &[AclBinding],
) -> Result<Vec<Option<String>>, ClientError> {
    let request = DeleteAclsRequest::default().with_filters(
        bindings
            .iter()
            .map(|b| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(b.resource_type)
                    .with_resource_name_filter(Some(StrBytes::from_string(b.resource_name.clone())))
                    .with_pattern_type_filter(b.pattern_type)
                    .with_principal_filter(Some(StrBytes::from_string(b.principal.clone())))
                    .with_host_filter(Some(StrBytes::from_string(b.host.clone())))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission_type)
            })
            .collect(),
    );
    let response = conn.call(&request, ACLS_VERSION).await?;
    let results = response.filter_results.into_iter();
    Ok(outcomes(
        bindings.len(),
        results.map(|r| (r.error_code, r.error_message)).collect(),
    ))
}

/// Each of `count` bindings' outcome from the broker's results, in order.
fn outcomes(count: usize, results: Vec<(i16, Option<StrBytes>)>) -> Vec<Option<String>> {
    (0..count)
        .map(|i| match results.get(i) {
            Some((0, _)) => None,
            Some((code, message)) => Some(broker_error(*code, message.as_ref()).to_string()),
            None => Some("left out of the broker's answer".into()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confluent_filters_parse_case_insensitively_with_any_for_what_is_missing() {
        let json = r#"{"aclFilters":[
            {"resourceFilter":{"resourceType":"TOPIC","name":"orders","patternType":"literal"},
             "accessFilter":{"principal":"User:alice","host":"*","operation":"Read","permissionType":"ALLOW"}},
            {"resourceFilter":{"resourceType":"any"}}]}"#;
        let filters = parse_filters(json).unwrap();
        assert_eq!(filters.len(), 2);
        assert_eq!(
            filters[0],
            AclFilter {
                resource_type: 2,
                resource_name: Some("orders".into()),
                pattern_type: 3,
                principal: Some("User:alice".into()),
                host: Some("*".into()),
                operation: 3,
                permission_type: 3,
            }
        );
        assert_eq!(
            (
                filters[1].pattern_type,
                filters[1].operation,
                filters[1].permission_type
            ),
            (ANY, ANY, ANY)
        );
    }

    #[test]
    fn every_bad_name_is_reported() {
        let json = r#"{"aclFilters":[{"resourceFilter":{"resourceType":"table","patternType":"glob"},
            "accessFilter":{"operation":"peek"}}]}"#;
        let error = parse_filters(json).unwrap_err();
        for word in ["table", "glob", "peek"] {
            assert!(error.contains(word), "{error}");
        }
        assert!(parse_filters(r#"{"aclFilters":[]}"#).is_err());
        assert!(parse_filters(
            r#"{"aclFilters":[{"resourceFilter":{"resourceType":"topic"},"extra":1}]}"#
        )
        .is_err());
    }

    #[test]
    fn only_concrete_bounded_bindings_are_valid() {
        let good = AclBinding {
            resource_type: 2,
            resource_name: "t".into(),
            pattern_type: 3,
            principal: "User:a".into(),
            host: "*".into(),
            operation: 3,
            permission_type: 3,
        };
        assert!(good.is_valid());
        assert_eq!(
            good.to_string(),
            "ALLOW User:a READ on TOPIC 't' (LITERAL) from *"
        );
        for bad in [
            AclBinding {
                resource_type: ANY,
                ..good.clone()
            },
            AclBinding {
                pattern_type: 2,
                ..good.clone()
            },
            AclBinding {
                operation: 99,
                ..good.clone()
            },
            AclBinding {
                principal: String::new(),
                ..good.clone()
            },
            AclBinding {
                host: "h".repeat(MAX_ACL_FIELD + 1),
                ..good.clone()
            },
        ] {
            assert!(!bad.is_valid(), "{bad:?}");
        }
    }
}
