//! Where a signed-in account stands in the areas (county > street > community > grid) and the
//! `?area=` drill-down. A street-office or county account, or an admin where streets or a
//! county exist, sees the dashboard rolled up by community (and by street); `?area=` narrows
//! any page to one street or community of its scope, and anything outside it is refused.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;

use super::Fail;
use super::auth::Staff;
use crate::AppState;
use crate::accounts::{Area, Role};

/// A community in scope: its name and the street it belongs to (none where the tree has no
/// streets above it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Community {
    pub name: String,
    pub street: Option<String>,
}

/// The communities and streets above the grids of a staff member's scope.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The page rolls figures up by community: the account's area is a street or the county,
    /// or it is an admin's over a tree that has streets or a county.
    pub wide: bool,
    /// Grid → its community, for every grid in scope that has one.
    pub community_of: HashMap<String, String>,
    /// Community id → name and street.
    pub communities: BTreeMap<String, Community>,
    /// Street id → name.
    pub streets: BTreeMap<String, String>,
    /// The street or community a page was narrowed to (`?area=`), if any.
    pub narrowed_to: Option<String>,
}

/// How many parents an area may have above it: county > street > community > grid, with room
/// for a tree one level deeper. A loop in `parent_id` ends here.
const MAX_DEPTH: usize = 8;

impl Scope {
    /// The scope of these grids in these areas; `own` are the levels of the areas the account
    /// was given (for an admin: every level that exists).
    pub fn of(grids: &[String], areas: &[Area], own: &[&str]) -> Scope {
        let by_id: HashMap<&str, &Area> = areas.iter().map(|a| (a.id.as_str(), a)).collect();
        let mut scope = Scope {
            wide: own.iter().any(|l| matches!(*l, "street" | "county")),
            ..Scope::default()
        };
        for grid in grids {
            let mut at = by_id
                .get(grid.as_str())
                .and_then(|a| a.parent_id.as_deref());
            let (mut community, mut street) = (None, None);
            for _ in 0..MAX_DEPTH {
                let Some(area) = at.and_then(|id| by_id.get(id)) else {
                    break;
                };
                match area.level.as_str() {
                    "community" if community.is_none() => community = Some(*area),
                    "street" if street.is_none() => street = Some(*area),
                    _ => {}
                }
                at = area.parent_id.as_deref();
            }
            let Some(c) = community else { continue };
            scope.community_of.insert(grid.clone(), c.id.clone());
            if let Some(s) = street {
                scope.streets.insert(s.id.clone(), s.name.clone());
            }
            scope.communities.insert(
                c.id.clone(),
                Community {
                    name: c.name.clone(),
                    street: street.map(|s| s.id.clone()),
                },
            );
        }
        scope
    }

    /// The community of a grid, or the grid itself where it has none (so nothing in scope is
    /// left out of a roll-up).
    pub fn community(&self, grid: &str) -> String {
        self.community_of
            .get(grid)
            .cloned()
            .unwrap_or_else(|| grid.to_string())
    }

    pub fn community_name(&self, id: &str) -> Option<&str> {
        self.communities.get(id).map(|c| c.name.as_str())
    }

    /// The street of a community, when there is one.
    pub fn street_of(&self, community: &str) -> Option<&str> {
        self.communities.get(community)?.street.as_deref()
    }

    /// The name of a street or community in scope.
    pub fn area_name(&self, id: &str) -> Option<&str> {
        self.streets
            .get(id)
            .map(String::as_str)
            .or_else(|| self.community_name(id))
    }
}

/// The scope of a signed-in staff member, from the areas the accounts store holds.
pub async fn scope(state: &AppState, staff: &Staff) -> Result<Scope, Fail> {
    let store = |e| Fail::storage(staff.lang, e);
    let areas = state.accounts.areas().await.map_err(store)?;
    let own = state
        .accounts
        .user_areas(&staff.user.id)
        .await
        .map_err(store)?;
    let is_admin = staff.user.role == Role::Admin;
    let levels: Vec<&str> = areas
        .iter()
        .filter(|a| is_admin || own.contains(&a.id))
        .map(|a| a.level.as_str())
        .collect();
    Ok(Scope::of(&staff.grids, &areas, &levels))
}

/// A page's staff member and scope, narrowed to `area` (`?area=`; empty changes nothing).
/// An area that is not a street or community of the scope (another street's, a grid, one made
/// up) is refused with 403.
pub async fn narrowed(state: &AppState, staff: &Staff, area: &str) -> Result<(Staff, Scope), Fail> {
    let scope = scope(state, staff).await?;
    scope.narrow(staff, area)
}

impl Scope {
    pub fn narrow(&self, staff: &Staff, area: &str) -> Result<(Staff, Scope), Fail> {
        if area.is_empty() {
            return Ok((staff.clone(), self.clone()));
        }
        // A street is a place to narrow to only for an account above it.
        let is_street = self.wide && self.streets.contains_key(area);
        let is_community = self.communities.contains_key(area);
        if !is_street && !is_community {
            return Err(Fail::new(StatusCode::FORBIDDEN, staff.lang.t("err.area")));
        }
        let inside = |grid: &String| {
            let community = self.community_of.get(grid);
            community.is_some_and(|c| c == area || self.street_of(c) == Some(area))
        };
        let mut narrowed = staff.clone();
        narrowed.grids.retain(inside);
        let mut scope = self.clone();
        scope.wide = is_street;
        scope.narrowed_to = Some(area.to_string());
        scope.community_of.retain(|g, _| inside(g));
        let kept: std::collections::HashSet<String> =
            scope.community_of.values().cloned().collect();
        scope.communities.retain(|c, _| kept.contains(c));
        let street = if is_street {
            Some(area)
        } else {
            self.street_of(area)
        };
        scope
            .streets
            .retain(|s, _| self.wide && Some(s.as_str()) == street);
        Ok((narrowed, scope))
    }

    /// The streets and communities in scope as filter choices, by id.
    pub fn area_options(&self) -> Vec<(String, String)> {
        let streets = self.streets.iter().map(|(id, n)| (id.clone(), n.clone()));
        let communities = self.communities.iter().map(|(id, c)| {
            let name = match c.street.as_deref().and_then(|s| self.streets.get(s)) {
                Some(street) => format!("{street} · {}", c.name),
                None => c.name.clone(),
            };
            (id.clone(), name)
        });
        streets.chain(communities).collect()
    }

    /// The street a page was narrowed to, or the street of the community it was.
    pub fn narrowed_street(&self) -> Option<&str> {
        let at = self.narrowed_to.as_deref()?;
        if self.streets.contains_key(at) {
            Some(at)
        } else {
            self.street_of(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(id: &str, parent: Option<&str>, level: &str) -> Area {
        Area {
            id: id.into(),
            parent_id: parent.map(String::from),
            level: level.into(),
            name: format!("{id}-名"),
        }
    }

    #[test]
    fn test_grids_roll_up_to_their_community_and_street_and_a_loop_ends() {
        let areas = [
            area("x", None, "county"),
            area("s1", Some("x"), "street"),
            area("m1", Some("s1"), "community"),
            area("g1", Some("m1"), "grid"),
            area("m9", None, "community"),
            area("g9", Some("m9"), "grid"),
            area("a", Some("b"), "community"),
            area("b", Some("a"), "street"),
            area("g0", Some("a"), "grid"),
        ];
        let grids: Vec<String> = ["g1", "g9", "g0", "gx"].map(String::from).to_vec();
        let s = Scope::of(&grids, &areas, &["county"]);
        assert!(s.wide);
        assert_eq!(s.community("g1"), "m1");
        assert_eq!(s.street_of("m1"), Some("s1"));
        assert_eq!(s.street_of("m9"), None);
        assert_eq!(s.community("g0"), "a");
        assert_eq!(
            s.community("gx"),
            "gx",
            "a grid with no community stands alone"
        );
        assert!(!Scope::of(&grids, &areas, &["community"]).wide);
    }
}
