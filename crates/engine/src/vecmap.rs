//! A small map kept as one sorted vector: the session's variables, visit counts and directory
//! records, which hold a handful of entries each.
//!
//! Invariants: entries are sorted by key and keys are unique, so iteration order is key order,
//! as a `BTreeMap`'s; it serialises exactly as a `BTreeMap` does (a map, entries in key order),
//! so sessions stored with `BTreeMap`s read back unchanged and the stored bytes are the same.
//! A lookup is a binary search, an insert one move of the tail; there is one allocation for the
//! whole map instead of a tree node (and its rebalancing) per few entries, which matters because
//! every webhook decodes, changes, encodes and drops these maps.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A map of few entries, as a sorted vector (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// An empty map (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        VecMap {
            entries: Vec::with_capacity(n),
        }
    }

    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value of `key`, to change in place.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.find(key) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        // Keys that come in order (a record built field by field) go to the end at once.
        if self.entries.last().is_none_or(|(last, _)| *last < key) {
            self.entries.push((key, value));
            return None;
        }
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }
}

impl<K, V> VecMap<K, V> {
    /// Entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    /// Later entries win over earlier ones with the same key, as in a `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(K, V)> = iter.into_iter().collect();
        // A stable sort keeps equal keys in input order; keep the last of each run.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(K, V)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match kept.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => kept.push(entry),
            }
        }
        VecMap { entries: kept }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Serialize, V: Serialize> Serialize for VecMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for VecMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(PhantomData<(K, V)>);

        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
            type Value = VecMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // Bounded by what the input holds, not by what its length prefix claims.
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                // Written in key order, so this is a check, not a sort, for every stored map.
                if entries.is_sorted_by(|a: &(K, V), b| a.0 < b.0) {
                    Ok(VecMap { entries })
                } else {
                    Ok(entries.into_iter().collect())
                }
            }
        }

        deserializer.deserialize_map(Entries(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::VecMap;

    #[test]
    fn keeps_keys_sorted_and_unique_like_a_btree_map() {
        let mut m = VecMap::new();
        let mut b = BTreeMap::new();
        for (k, v) in [("b", 1), ("a", 2), ("c", 3), ("a", 4), ("bb", 5)] {
            assert_eq!(m.insert(k.to_string(), v), b.insert(k.to_string(), v));
        }
        assert_eq!(m.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        assert_eq!(m.get("a"), Some(&4));
        assert_eq!(m.get("zz"), None);
        *m.get_mut("c").expect("c") += 10;
        assert_eq!(m.get("c"), Some(&13));
        assert_eq!(m.remove("b"), Some(1));
        assert_eq!(m.remove("b"), None);
        assert!(m.contains_key("bb") && !m.contains_key("b"));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn serialises_to_the_same_bytes_as_a_btree_map_and_reads_them_back() {
        let pairs = [("visits", 2u32), ("a", 1), ("zeta", 7), ("b", 0)];
        let m: VecMap<String, u32> = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let b: BTreeMap<String, u32> = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let bytes = postcard::to_allocvec(&m).expect("postcard");
        assert_eq!(bytes, postcard::to_allocvec(&b).expect("postcard"));
        assert_eq!(
            serde_json::to_string(&m).expect("json"),
            serde_json::to_string(&b).expect("json")
        );
        let back: VecMap<String, u32> = postcard::from_bytes(&bytes).expect("reads");
        assert_eq!(back, m);
    }

    #[test]
    fn unsorted_or_repeated_input_is_put_in_order_with_the_last_value_winning() {
        let json = r#"{"b": 1, "a": 2, "b": 3}"#;
        let m: VecMap<String, u32> = serde_json::from_str(json).expect("reads");
        let b: BTreeMap<String, u32> = serde_json::from_str(json).expect("reads");
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            b.iter().collect::<Vec<_>>(),
            "same entries, same order as a BTreeMap"
        );
    }
}
