//! Splitting a command line into its name, positional words and `key=value` options

use shale_core::raft::NodeId;

/// A parsed command line
#[derive(Debug)]
pub struct Args {
    /// The command name (first word)
    pub name: String,
    /// Words without `=`, in order
    pub positional: Vec<String>,
    /// `key=value` words, in order
    pub options: Vec<(String, String)>,
}

impl Args {
    /// Splits `line` on whitespace
    pub fn parse(line: &str) -> Result<Args, String> {
        let mut words = line.split_whitespace();
        let name = words.next().ok_or("empty command")?.to_owned();
        let mut positional = Vec::new();
        let mut options = Vec::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) if !k.is_empty() => options.push((k.to_owned(), v.to_owned())),
                _ => positional.push(w.to_owned()),
            }
        }
        Ok(Args {
            name,
            positional,
            options,
        })
    }

    /// Fails if an option outside `allowed` was given
    pub fn allow_options(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .options
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(format!("{}: unknown option `{k}`", self.name)),
            None => Ok(()),
        }
    }

    /// The value of option `key`, parsed
    pub fn option<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.options.iter().rev().find(|(k, _)| k == key) {
            Some((_, v)) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{}: bad value for `{key}`: `{v}`", self.name)),
            None => Ok(None),
        }
    }

    /// Every positional word parsed as a node id
    pub fn node_ids(&self) -> Result<Vec<NodeId>, String> {
        self.positional
            .iter()
            .map(|w| parse_id(&self.name, w))
            .collect()
    }

    /// Exactly one positional node id
    pub fn one_id(&self) -> Result<NodeId, String> {
        match self.positional.as_slice() {
            [w] => parse_id(&self.name, w),
            _ => Err(format!("{}: expected exactly one node id", self.name)),
        }
    }

    /// The first positional word as a node id, and the remaining words
    pub fn id_and_rest(&self) -> Result<(NodeId, &[String]), String> {
        match self.positional.split_first() {
            Some((first, rest)) => Ok((parse_id(&self.name, first)?, rest)),
            None => Err(format!("{}: expected a node id", self.name)),
        }
    }
}

/// Parses one word as a node id
fn parse_id(cmd: &str, word: &str) -> Result<NodeId, String> {
    word.parse()
        .map_err(|_| format!("{cmd}: `{word}` is not a node id"))
}
