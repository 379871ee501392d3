//! Geohashes as Redis's GEO commands use them: a point is the 52-bit interleaving of its
//! longitude and latitude cells (26 bits each) over longitude [-180, 180] and latitude
//! [-85.05112878, 85.05112878], stored as a sorted set score. A search covers its area with the
//! cell holding the centre plus its 8 neighbours at a precision fit for the radius, reads each
//! cell as a score range, and keeps the points inside the shape.
//!
//! Every step (offsets truncated to cells, decoded centres, the precision estimate, the
//! neighbours dropped at the edges, haversine distances with Redis's earth radius) computes what
//! Redis computes, in the same order of floating point operations, so searches return the same
//! points and distances print the same digits.

use std::f64::consts::PI;

/// Bits per coordinate of a stored point (26 * 2 = 52, exact in a double score).
pub const STEP_MAX: u8 = 26;
pub const LON_MIN: f64 = -180.0;
pub const LON_MAX: f64 = 180.0;
/// The Web Mercator limits: cells cannot reach the poles.
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;
/// Earth's quadratic mean radius (WGS-84), the one Redis's distances use.
pub const EARTH_RADIUS_M: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
/// Degrees to radians as Redis computes it (`M_PI / 180.0`).
const D_R: f64 = PI / 180.0;

fn deg_rad(deg: f64) -> f64 {
    deg * D_R
}

fn rad_deg(rad: f64) -> f64 {
    rad / D_R
}

/// An interval of one coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

/// The coordinate ranges stored points are hashed over.
pub const LON_RANGE: Range = Range {
    min: LON_MIN,
    max: LON_MAX,
};
pub const LAT_RANGE: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

/// A cell: `step` bits per coordinate, interleaved (latitude in the even bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cell {
    pub bits: u64,
    pub step: u8,
}

impl Cell {
    /// The "no cell" marker (a neighbour left out of a search).
    pub const NONE: Cell = Cell { bits: 0, step: 0 };

    pub fn is_none(self) -> bool {
        self.bits == 0 && self.step == 0
    }

    /// The cell's bits left-aligned to 52 bits: the lowest score of a point inside it.
    pub fn align52(self) -> u64 {
        self.bits << (52 - u32::from(self.step) * 2)
    }

    /// The scores of the points inside the cell: `[min, max)`.
    pub fn score_range(self) -> (u64, u64) {
        let next = Cell {
            bits: self.bits.wrapping_add(1),
            step: self.step,
        };
        (self.align52(), next.align52())
    }
}

/// The area a cell covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    pub lon: Range,
    pub lat: Range,
}

/// Spreads the 32 bits of `v` over the even bits of a u64.
fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Gathers the even bits of `v` into 32 bits.
fn squash(v: u64) -> u32 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
    x as u32
}

/// The cell of `step` bits holding (`lon`, `lat`) over the given ranges; `None` outside them
/// (or outside the stored points' limits, which bound every range used).
pub fn encode(lon_range: Range, lat_range: Range, lon: f64, lat: f64, step: u8) -> Option<Cell> {
    if step == 0 || step > 32 {
        return None;
    }
    let outside_limits = !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat);
    let outside_range =
        lat < lat_range.min || lat > lat_range.max || lon < lon_range.min || lon > lon_range.max;
    if outside_limits || outside_range {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_offset = (lat - lat_range.min) / (lat_range.max - lat_range.min) * scale;
    let lon_offset = (lon - lon_range.min) / (lon_range.max - lon_range.min) * scale;
    // Truncated to the cell index, as a C conversion to uint32_t does (offsets are >= 0).
    let bits = spread(lat_offset as u32) | (spread(lon_offset as u32) << 1);
    Some(Cell { bits, step })
}

/// The cell of a stored point (52 bits over the stored ranges).
pub fn encode_point(lon: f64, lat: f64) -> Option<Cell> {
    encode(LON_RANGE, LAT_RANGE, lon, lat, STEP_MAX)
}

/// The area `cell` covers over the given ranges.
pub fn decode(lon_range: Range, lat_range: Range, cell: Cell) -> Option<Area> {
    if cell.is_none() {
        return None;
    }
    let ilat = squash(cell.bits);
    let ilon = squash(cell.bits >> 1);
    let div = (1u64 << cell.step) as f64;
    let lat_scale = lat_range.max - lat_range.min;
    let lon_scale = lon_range.max - lon_range.min;
    // `+ 1` wraps in 32 bits as Redis's does (only a garbage score reaches the top index).
    let at = |i: u32, r: Range, scale: f64| r.min + (f64::from(i) / div) * scale;
    Some(Area {
        lat: Range {
            min: at(ilat, lat_range, lat_scale),
            max: at(ilat.wrapping_add(1), lat_range, lat_scale),
        },
        lon: Range {
            min: at(ilon, lon_range, lon_scale),
            max: at(ilon.wrapping_add(1), lon_range, lon_scale),
        },
    })
}

/// The centre of a stored point's cell, clamped to the limits: what GEOPOS answers.
pub fn decode_cell_center(cell: Cell) -> Option<(f64, f64)> {
    let a = decode(LON_RANGE, LAT_RANGE, cell)?;
    let lon = ((a.lon.min + a.lon.max) / 2.0).clamp(LON_MIN, LON_MAX);
    let lat = ((a.lat.min + a.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    Some((lon, lat))
}

/// A sorted set score read as a 52-bit cell, converted the way x86-64 C converts a double to
/// `uint64_t` (a score written by ZADD can be anything).
pub fn score_cell(score: f64) -> Cell {
    Cell {
        bits: c_double_to_u64(score),
        step: STEP_MAX,
    }
}

/// The position a score decodes to (every score decodes; odd ones land clamped at the edges).
pub fn score_position(score: f64) -> Option<(f64, f64)> {
    decode_cell_center(score_cell(score))
}

/// `(uint64_t)d` as gcc compiles it on x86-64: truncation below 2^63 (a negative value wraps as
/// its signed conversion, out of range gives `0x8000...`), above it the conversion of `d - 2^63`
/// with the top bit flipped.
fn c_double_to_u64(d: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    if d < TWO63 {
        c_double_to_i64(d) as u64
    } else {
        (c_double_to_i64(d - TWO63) as u64) ^ (1 << 63)
    }
}

/// `cvttsd2si`: truncation, `i64::MIN` for NaN and anything out of range.
pub fn c_double_to_i64(d: f64) -> i64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    if !(-TWO63..TWO63).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

/// Moves `cell` one column east (`d > 0`) or west, wrapping around.
fn move_x(cell: Cell, d: i8) -> Cell {
    move_bits(cell, d, 0xAAAA_AAAA_AAAA_AAAA)
}

/// Moves `cell` one row north (`d > 0`) or south, wrapping around.
fn move_y(cell: Cell, d: i8) -> Cell {
    move_bits(cell, d, 0x5555_5555_5555_5555)
}

/// Adds or subtracts one to the coordinate held in the bits of `mask`, leaving the other's.
fn move_bits(cell: Cell, d: i8, mask: u64) -> Cell {
    if d == 0 {
        return cell;
    }
    let shift = 64 - u32::from(cell.step) * 2;
    let mine = cell.bits & mask;
    let other = cell.bits & !mask;
    // The other coordinate's bits, within the cell's width: set them to carry through ours.
    let filler = (!mask) >> shift;
    let moved = if d > 0 {
        mine.wrapping_add(filler.wrapping_add(1))
    } else {
        (mine | filler).wrapping_sub(filler.wrapping_add(1))
    };
    Cell {
        bits: (moved & (mask >> shift)) | other,
        step: cell.step,
    }
}

/// The 8 cells around `c`: north, south, east, west, north-east, north-west, south-east,
/// south-west.
fn neighbours(c: Cell) -> [Cell; 8] {
    [
        move_y(c, 1),
        move_y(c, -1),
        move_x(c, 1),
        move_x(c, -1),
        move_y(move_x(c, 1), 1),
        move_y(move_x(c, -1), 1),
        move_y(move_x(c, 1), -1),
        move_y(move_x(c, -1), -1),
    ]
}

/// A search area: a circle or an axis-aligned box around a centre, its sizes in `unit` (metres
/// per unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub lon: f64,
    pub lat: f64,
    pub kind: ShapeKind,
    pub unit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShapeKind {
    Radius(f64),
    Box { width: f64, height: f64 },
}

impl Shape {
    /// The bounding box: `[min_lon, min_lat, max_lon, max_lat]` (a box's sides bend with the
    /// latitude, so the wider of its top and bottom edges bounds it).
    pub fn bounds(&self) -> [f64; 4] {
        let (half_w, half_h) = match self.kind {
            ShapeKind::Radius(r) => (r, r),
            ShapeKind::Box { width, height } => (width / 2.0, height / 2.0),
        };
        let height = self.unit * half_h;
        let width = self.unit * half_w;
        let lat_delta = rad_deg(height / EARTH_RADIUS_M);
        let lon_delta_top = rad_deg(width / EARTH_RADIUS_M / deg_rad(self.lat + lat_delta).cos());
        let lon_delta_bottom =
            rad_deg(width / EARTH_RADIUS_M / deg_rad(self.lat - lat_delta).cos());
        let lon_delta = if self.lat < 0.0 {
            lon_delta_bottom
        } else {
            lon_delta_top
        };
        [
            self.lon - lon_delta,
            self.lat - lat_delta,
            self.lon + lon_delta,
            self.lat + lat_delta,
        ]
    }

    /// The distance from the centre to the farthest point of the shape, in metres.
    fn reach_m(&self) -> f64 {
        let r = match self.kind {
            ShapeKind::Radius(r) => r,
            ShapeKind::Box { width, height } => {
                ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
            }
        };
        r * self.unit
    }

    /// The distance from the centre to (`lon`, `lat`) in metres, if the point is inside.
    pub fn contains(&self, lon: f64, lat: f64) -> Option<f64> {
        match self.kind {
            ShapeKind::Radius(r) => {
                let d = distance(self.lon, self.lat, lon, lat);
                // Only a greater distance is outside: a NaN distance (rounding past the antipode) counts as inside, as
                // on Redis.
                let outside = d.partial_cmp(&(r * self.unit)) == Some(std::cmp::Ordering::Greater);
                (!outside).then_some(d)
            }
            ShapeKind::Box { width, height } => {
                // The latitude distance is the cheap one: checked first, as Redis does.
                if lat_distance(lat, self.lat) > height * self.unit / 2.0 {
                    return None;
                }
                if distance(lon, lat, self.lon, lat) > width * self.unit / 2.0 {
                    return None;
                }
                Some(distance(self.lon, self.lat, lon, lat))
            }
        }
    }

    /// The cells to read for this shape, in the order they are read: the centre's cell, then
    /// north, south, east, west, north-east, north-west, south-east, south-west;
    /// [`Cell::NONE`] for a neighbour that cannot hold a point of the shape.
    pub fn cells(&self) -> [Cell; 9] {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounds();
        let mut step = estimate_step(self.reach_m(), self.lat);
        let Some(mut centre) = encode(LON_RANGE, LAT_RANGE, self.lon, self.lat, step) else {
            return [Cell::NONE; 9];
        };
        let mut around = neighbours(centre);
        let area_of = |c: Cell| decode(LON_RANGE, LAT_RANGE, c);
        // Near a cell's edge the estimated step can leave part of the shape outside the 9
        // cells: one step coarser then.
        let [north, south, east, west, ..] = around.map(area_of);
        let too_small = north.is_some_and(|a| a.lat.max < max_lat)
            || south.is_some_and(|a| a.lat.min > min_lat)
            || east.is_some_and(|a| a.lon.max < max_lon)
            || west.is_some_and(|a| a.lon.min > min_lon);
        if step > 1 && too_small {
            step -= 1;
            let Some(c) = encode(LON_RANGE, LAT_RANGE, self.lon, self.lat, step) else {
                return [Cell::NONE; 9];
            };
            centre = c;
            around = neighbours(centre);
        }
        if step >= 2 {
            if let Some(area) = area_of(centre) {
                let [n, s, e, w, ne, nw, se, sw] = [0, 1, 2, 3, 4, 5, 6, 7];
                let mut drop = |idx: &[usize]| idx.iter().for_each(|&i| around[i] = Cell::NONE);
                if area.lat.min < min_lat {
                    drop(&[s, sw, se]);
                }
                if area.lat.max > max_lat {
                    drop(&[n, ne, nw]);
                }
                if area.lon.min < min_lon {
                    drop(&[w, sw, nw]);
                }
                if area.lon.max > max_lon {
                    drop(&[e, se, ne]);
                }
            }
        }
        let [n, s, e, w, ne, nw, se, sw] = around;
        [centre, n, s, e, w, ne, nw, se, sw]
    }
}

/// The precision (bits per coordinate) whose cells are about as wide as the search: 26 for a
/// zero radius, coarser toward the poles, within 1..=26.
fn estimate_step(range_m: f64, lat: f64) -> u8 {
    if range_m == 0.0 {
        return STEP_MAX;
    }
    let mut range = range_m;
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    // Keeps the range inside the 9 cells in most cases.
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, i32::from(STEP_MAX)) as u8
}

/// Metres between two latitudes on one meridian.
fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Great-circle distance in metres (haversine) between two points given in degrees.
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let v = ((deg_rad(lon2) - deg_rad(lon1)) / 2.0).sin();
    // On one meridian the formula reduces to the latitude difference.
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let lat1r = deg_rad(lat1);
    let lat2r = deg_rad(lat2);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// The standard 11-character geohash of a stored point (GEOHASH): its cell centre re-encoded
/// over latitude [-90, 90], 5 bits a character, the 11th always `0`.
pub fn geohash_string(score: f64) -> Option<[u8; 11]> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon, lat) = score_position(score)?;
    let world = Range {
        min: -90.0,
        max: 90.0,
    };
    let cell = encode(LON_RANGE, world, lon, lat, STEP_MAX)?;
    let mut out = [b'0'; 11];
    for (i, ch) in out.iter_mut().take(10).enumerate() {
        let idx = (cell.bits >> (52 - (i + 1) * 5)) & 0x1f;
        *ch = ALPHABET[idx as usize];
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn interleave_round_trips() {
        for v in [0u32, 1, 0xFFFF_FFFF, 0x1234_5678, 0x8000_0001] {
            assert_eq!(squash(spread(v)), v);
            assert_eq!(squash(spread(v) << 1 >> 1), v);
        }
        assert_eq!(spread(0b11), 0b101);
    }

    #[test]
    fn scores_match_redis() {
        // Scores Redis stores for these points (GEOADD then ZSCORE).
        let cell = encode_point(-73.9454966, 40.747533).unwrap();
        assert_eq!(cell.align52(), 1791875804419201);
        let cell = encode_point(-74.0131604, 40.7126674).unwrap();
        assert_eq!(cell.align52(), 1791873972053020);
        assert!(encode_point(181.0, 0.0).is_none());
        assert!(encode_point(0.0, 85.1).is_none());
    }

    #[test]
    fn geohash_of_wikipedia_example() {
        let s = encode_point(-5.6, 42.6).unwrap().align52() as f64;
        assert_eq!(&geohash_string(s).unwrap(), b"ezs42e44yx0");
    }

    #[test]
    fn neighbours_wrap() {
        let c = Cell { bits: 0, step: 1 };
        let [n, s, e, w, ..] = neighbours(c);
        assert_eq!(n, s);
        assert_eq!(e, w);
        assert_eq!(n.bits, 0b01);
        assert_eq!(e.bits, 0b10);
    }

    #[test]
    fn double_conversions_like_c() {
        assert_eq!(c_double_to_u64(-1.0), u64::MAX);
        assert_eq!(c_double_to_u64(f64::INFINITY), 0);
        assert_eq!(c_double_to_u64(f64::NEG_INFINITY), 1 << 63);
        assert_eq!(c_double_to_u64(1e19), 10_000_000_000_000_000_000);
        assert_eq!(c_double_to_i64(1e19), i64::MIN);
    }

    #[test]
    fn distance_is_haversine() {
        let d = distance(13.361389, 38.115556, 15.087269, 37.502669);
        assert!((d - 166274.15).abs() < 1.0, "{d}");
        assert_eq!(distance(1.0, 2.0, 1.0, 2.0), 0.0);
    }
}
