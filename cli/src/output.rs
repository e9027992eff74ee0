//! `--output text|json|yaml`: read commands print their answers as lines for
//! people, or as the proto3 JSON mapping (and its YAML form) for programs.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people (the default).
    #[default]
    Text,
    /// The proto3 JSON mapping (field names in lowerCamelCase, enums by name,
    /// 64-bit integers as strings), one document.
    Json,
    /// The same document as YAML.
    Yaml,
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(airt_proto::FILE_DESCRIPTOR_SET)
            .expect("the compiled-in descriptor set decodes")
    })
}

/// `message` in the proto3 JSON mapping.
pub fn to_json<M: prost::Message + prost::Name>(message: &M) -> anyhow::Result<Value> {
    let descriptor = pool()
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| anyhow::anyhow!("no descriptor for {}", M::full_name()))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut json = dynamic.serialize_with_options(serde_json::value::Serializer, &options)?;
    whole_numbers(&mut json);
    Ok(json)
}

/// Writes whole doubles as integers (`7`, not `7.0`): protobuf carries every
/// number of a `Struct`/`Value` as a double, and the values people put in
/// inputs and read in outputs are mostly counts.
fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float.abs() <= 9_007_199_254_740_992.0
            {
                #[allow(clippy::cast_possible_truncation)]
                let whole = float as i64;
                *value = Value::from(whole);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Prints `document` as JSON or YAML.
pub fn print(format: Format, document: &Value) -> anyhow::Result<()> {
    match format {
        Format::Json => out!("{}", serde_json::to_string_pretty(document)?),
        Format::Yaml => out!("{}", serde_norway::to_string(document)?.trim_end()),
        Format::Text => anyhow::bail!("text output is printed by each command"),
    }
    Ok(())
}

/// Prints one answer: `text` prints it for people, else the message itself.
pub fn one<M: prost::Message + prost::Name>(
    format: Format,
    message: &M,
    text: impl FnOnce(&M),
) -> anyhow::Result<()> {
    if format == Format::Text {
        text(message);
        return Ok(());
    }
    print(format, &to_json(message)?)
}

/// The items of a paged list: lines as they come for people, one array at
/// the end for programs.
#[derive(Debug)]
pub struct Listing {
    format: Format,
    items: Vec<Value>,
    count: usize,
}

impl Listing {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            items: Vec::new(),
            count: 0,
        }
    }

    pub fn push<M: prost::Message + prost::Name>(
        &mut self,
        item: &M,
        text: impl FnOnce(&M),
    ) -> anyhow::Result<()> {
        self.count += 1;
        match self.format {
            Format::Text => text(item),
            _ => self.items.push(to_json(item)?),
        }
        Ok(())
    }

    /// How many items were listed.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Prints the array (JSON/YAML); nothing more for text.
    pub fn finish(self) -> anyhow::Result<()> {
        match self.format {
            Format::Text => Ok(()),
            format => print(format, &Value::Array(self.items)),
        }
    }
}
