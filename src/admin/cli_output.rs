//! `--output text|json|yaml` of the CLI's listing and describe commands: text is the
//! layout of Confluent's tools; json and yaml print the admin API's objects as they
//! are, for scripts.

use clap::ValueEnum;
use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
    Yaml,
}

impl OutputFormat {
    /// `value` rendered for scripts, or None when the text layout is wanted.
    pub fn render(self, value: &Value) -> anyhow::Result<Option<String>> {
        Ok(match self {
            OutputFormat::Text => None,
            OutputFormat::Json => Some(format!("{}\n", serde_json::to_string_pretty(value)?)),
            OutputFormat::Yaml => Some(serde_norway::to_string(value)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::OutputFormat;

    #[test]
    fn json_and_yaml_carry_the_same_fields_and_text_is_left_to_the_caller() {
        let value = json!([{ "mirror_topic_name": "orders", "mirror_lags": [{ "partition": 0, "lag": 3 }] }]);
        assert_eq!(OutputFormat::Text.render(&value).unwrap(), None);
        let json = OutputFormat::Json.render(&value).unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            value
        );
        let yaml = OutputFormat::Yaml.render(&value).unwrap().unwrap();
        assert_eq!(
            serde_norway::from_str::<serde_json::Value>(&yaml).unwrap(),
            value
        );
        assert!(yaml.contains("mirror_topic_name: orders"), "{yaml}");
    }
}
