//! Typed positions of a generation's routes and origins. An id is made only while a generation is
//! built, from the position of its route or origin in that generation's lists, and a request
//! keeps the generation it started with: an id always names an entry of the generation it is used
//! with. This module imports nothing of the crate, so every layer may name the ids.

use std::fmt;

/// A route of one generation (its position in the configuration's `routes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(usize);

/// An origin of one generation (its position in the configuration's `origins`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OriginId(usize);

macro_rules! position {
    ($id:ident) => {
        impl $id {
            /// The id of the entry at `index`.
            pub(crate) fn at(index: usize) -> $id {
                $id(index)
            }

            /// The entry's position in its list.
            pub(crate) fn index(self) -> usize {
                self.0
            }
        }

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

position!(RouteId);
position!(OriginId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_position() {
        assert_eq!(RouteId::at(3).index(), 3);
        assert_eq!(OriginId::at(0).index(), 0);
        assert_ne!(RouteId::at(1), RouteId::at(2));
    }
}
