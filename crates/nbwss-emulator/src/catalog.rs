//! The image catalog: images by backup id, and an index in the order the listing shows them by default
//! (`backupTime`, whole seconds, as rendered; ties by backup id), so that a page of
//! `GET /catalog/images` walks the index to its offset and renders only the images on the page.

use std::collections::btree_map::{self, BTreeMap};
use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use crate::model::Image;

/// Images by backup id, with their order by `backupTime`.
///
/// An image's `backup_id` and `backup_time` are its index key: they are set when it is inserted and never
/// changed through [`Catalog::get_mut`] (nothing in the emulator does; a removal checks the index agrees).
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    images: BTreeMap<String, Image>,
    /// `(backupTime in whole seconds, backup id)` of every image.
    by_time: BTreeSet<(i64, String)>,
}

impl Catalog {
    pub(crate) fn len(&self) -> usize {
        self.images.len()
    }

    pub(crate) fn get(&self, backup_id: &str) -> Option<&Image> {
        self.images.get(backup_id)
    }

    /// The image to change in place; its `backup_id` and `backup_time` must stay as they are.
    pub(crate) fn get_mut(&mut self, backup_id: &str) -> Option<&mut Image> {
        self.images.get_mut(backup_id)
    }

    pub(crate) fn contains_key(&self, backup_id: &str) -> bool {
        self.images.contains_key(backup_id)
    }

    /// Adds (or replaces) the image `backup_id`.
    pub(crate) fn insert(&mut self, backup_id: String, image: Image) {
        debug_assert_eq!(backup_id, image.backup_id);
        self.by_time.insert((image.backup_time.timestamp(), backup_id.clone()));
        if let Some(old) = self.images.insert(backup_id, image) {
            self.unindex(&old);
        }
    }

    pub(crate) fn remove(&mut self, backup_id: &str) -> Option<Image> {
        let image = self.images.remove(backup_id)?;
        self.unindex(&image);
        Some(image)
    }

    fn unindex(&mut self, image: &Image) {
        let key = (image.backup_time.timestamp(), image.backup_id.clone());
        // A replaced image under the same key stays indexed by its successor.
        if self.images.get(&image.backup_id).is_some_and(|now| now.backup_time.timestamp() == key.0) {
            return;
        }
        let removed = self.by_time.remove(&key);
        debug_assert!(removed, "the image {} changed its backupTime in place", image.backup_id);
    }

    /// Every image, by backup id.
    pub(crate) fn values(&self) -> btree_map::Values<'_, String, Image> {
        self.images.values()
    }

    /// Every backup id, in order.
    pub(crate) fn keys(&self) -> btree_map::Keys<'_, String, Image> {
        self.images.keys()
    }

    /// The backup ids of the images whose `backupTime` (whole seconds) lies in `seconds`, by `backupTime`
    /// ascending or descending; images of the same second by backup id ascending either way (the order the
    /// listing has always given).
    pub(crate) fn by_time(
        &self,
        seconds: RangeInclusive<i64>,
        descending: bool,
    ) -> Box<dyn Iterator<Item = (i64, &str)> + '_> {
        let range = self.time_range(seconds);
        if descending {
            Box::new(SecondsDescending { inner: range.rev().peekable(), run: Vec::new() })
        } else {
            Box::new(range.map(|(time, id)| (*time, id.as_str())))
        }
    }

    fn time_range(
        &self,
        seconds: RangeInclusive<i64>,
    ) -> std::collections::btree_set::Range<'_, (i64, String)> {
        let (low, high) = seconds.into_inner();
        if low > high {
            // An empty range (BTreeSet::range panics on reversed bounds).
            return self.by_time.range((i64::MAX, String::new())..(i64::MAX, String::new()));
        }
        let start = std::ops::Bound::Included((low, String::new()));
        let end = match high.checked_add(1) {
            Some(next) => std::ops::Bound::Excluded((next, String::new())),
            None => std::ops::Bound::Unbounded,
        };
        self.by_time.range((start, end))
    }
}

/// Walks the index backwards second by second, each second's images by backup id ascending.
struct SecondsDescending<'a, I: Iterator<Item = &'a (i64, String)>> {
    inner: std::iter::Peekable<I>,
    /// The rest of the current second, backwards (popped from the end).
    run: Vec<(i64, &'a str)>,
}

impl<'a, I: Iterator<Item = &'a (i64, String)>> Iterator for SecondsDescending<'a, I> {
    type Item = (i64, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.run.pop() {
            return Some(item);
        }
        // Backwards, a second's images come by descending id; popping them yields ascending ids.
        let (time, id) = self.inner.next()?;
        self.run.push((*time, id.as_str()));
        while let Some((_, id)) = self.inner.next_if(|(next, _)| next == time) {
            self.run.push((*time, id.as_str()));
        }
        self.run.pop()
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::model::ScheduleKind;

    fn image(backup_id: &str, seconds: i64, millis: u32) -> Image {
        Image {
            backup_id: backup_id.to_owned(),
            policy_name: "p".to_owned(),
            policy_type: "Standard".to_owned(),
            client_name: "c".to_owned(),
            backup_time: DateTime::from_timestamp(seconds, millis * 1_000_000).unwrap(),
            schedule_name: "full".to_owned(),
            schedule_kind: ScheduleKind::Full,
            job_id: 1,
            kbytes: 0,
            num_files: 0,
            elapsed_seconds: 0,
            keyword: String::new(),
            copies: Vec::new(),
            slp: None,
            selections: Vec::new(),
        }
    }

    fn catalog(images: &[(&str, i64, u32)]) -> Catalog {
        let mut catalog = Catalog::default();
        for (id, seconds, millis) in images {
            catalog.insert((*id).to_owned(), image(id, *seconds, *millis));
        }
        catalog
    }

    fn listed(catalog: &Catalog, seconds: RangeInclusive<i64>, descending: bool) -> Vec<&str> {
        catalog.by_time(seconds, descending).map(|(_, id)| id).collect()
    }

    #[test]
    fn orders_by_whole_seconds_then_backup_id_either_way() {
        let catalog = catalog(&[("d", 20, 0), ("b", 10, 900), ("a", 10, 100), ("c", 10, 0), ("e", 5, 0)]);
        assert_eq!(listed(&catalog, i64::MIN..=i64::MAX, false), ["e", "a", "b", "c", "d"]);
        assert_eq!(listed(&catalog, i64::MIN..=i64::MAX, true), ["d", "a", "b", "c", "e"]);
        assert_eq!(listed(&catalog, 10..=10, true), ["a", "b", "c"]);
        assert_eq!(listed(&catalog, 6..=i64::MAX, false), ["a", "b", "c", "d"]);
        assert!(listed(&catalog, 11..=19, false).is_empty());
        assert!(listed(&catalog, RangeInclusive::new(30, 1), true).is_empty(), "a reversed range is empty");
    }

    #[test]
    fn keeps_the_index_with_replacements_and_removals() {
        let mut catalog = catalog(&[("a", 10, 0), ("b", 20, 0)]);
        catalog.insert("a".to_owned(), image("a", 30, 0));
        assert_eq!(listed(&catalog, i64::MIN..=i64::MAX, false), ["b", "a"]);
        catalog.insert("a".to_owned(), image("a", 30, 500));
        assert_eq!(listed(&catalog, i64::MIN..=i64::MAX, false), ["b", "a"]);
        assert_eq!(catalog.remove("a").map(|image| image.backup_id), Some("a".to_owned()));
        assert!(catalog.remove("a").is_none());
        assert_eq!(listed(&catalog, i64::MIN..=i64::MAX, true), ["b"]);
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog.by_time.len(), 1);
    }
}
