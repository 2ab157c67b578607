//! `serde` support: a [`PersistentMap`] is written and read as a map

use core::fmt;
use core::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{PersistentMap, SortedBuilder};

impl<K: Serialize, V: Serialize> Serialize for PersistentMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Reads a map: in O(n) through a [`SortedBuilder`] while the keys come in ascending order
/// (as [`Serialize`] writes them), by inserting from the first key out of order on
impl<'de, K, V> Deserialize<'de> for PersistentMap<K, V>
where
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

struct MapVisitor<K, V>(PhantomData<fn() -> (K, V)>);

impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
where
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    type Value = PersistentMap<K, V>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut builder = SortedBuilder::new();
        while let Some((key, value)) = access.next_entry()? {
            if let Err((key, value)) = builder.push(key, value) {
                let mut map = builder.finish();
                map.insert(key, value);
                while let Some((key, value)) = access.next_entry()? {
                    map.insert(key, value);
                }
                return Ok(map);
            }
        }
        Ok(builder.finish())
    }
}
