//! The differential test's command generator: seeded random commands of every data type over a
//! small keyspace (so commands collide on keys, convert encodings and meet the wrong type), and
//! how to compare two servers' replies where Redis leaves the order unspecified.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ringcache_protocol::Reply;

/// A family of commands the generator draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Strings,
    Keys,
    Hashes,
    Lists,
    Sets,
    ZSets,
    Bitmaps,
    HyperLogLog,
    Geo,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::Strings,
        Family::Keys,
        Family::Hashes,
        Family::Lists,
        Family::Sets,
        Family::ZSets,
        Family::Bitmaps,
        Family::HyperLogLog,
        Family::Geo,
    ];
}

/// How a command's replies are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Exact,
    /// Redis does not define the order (SMEMBERS, HGETALL, KEYS): compare sorted.
    Unordered,
    /// Random picks (SRANDMEMBER k n): compare the shape and the count only.
    Shape,
}

/// One generated command.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub args: Vec<String>,
    pub compare: Compare,
}

pub struct Gen {
    rng: StdRng,
    families: Vec<Family>,
}

const SMALL: &[&str] = &[
    "a", "b", "c", "1", "2", "10", "-3", "3.5", "", "foo bar", "0",
];
const LONG: &str = "a-value-long-enough-to-leave-the-packed-encodings-behind-0123456789abcdef";

impl Gen {
    pub fn new(seed: u64, families: &[Family]) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            families: families.to_vec(),
        }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.choose(&mut self.rng).copied().unwrap_or("")
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    fn int(&mut self, lo: i64, hi: i64) -> String {
        self.rng.gen_range(lo..=hi).to_string()
    }

    /// A key of `prefix`, or now and then one every family shares (so types collide).
    fn key(&mut self, prefix: &str) -> String {
        if self.chance(0.08) {
            format!("{{t}}x{}", self.rng.gen_range(0..2))
        } else {
            format!("{{t}}{prefix}{}", self.rng.gen_range(0..4))
        }
    }

    fn value(&mut self) -> String {
        if self.chance(0.05) {
            LONG.to_string()
        } else {
            self.pick(SMALL).to_string()
        }
    }

    /// A member: small integers (intsets), short words, rarely a long one.
    fn member(&mut self) -> String {
        match self.rng.gen_range(0..10) {
            0..=3 => self.int(0, 20),
            4..=8 => format!("m{}", self.rng.gen_range(0..12)),
            _ => format!("{LONG}{}", self.rng.gen_range(0..3)),
        }
    }

    fn score(&mut self) -> String {
        self.pick(&[
            "0", "1", "2", "2.5", "-1", "3", "10", "1e3", "-inf", "+inf", "0.1", "7",
        ])
        .to_string()
    }

    fn range_score(&mut self) -> String {
        self.pick(&[
            "-inf", "+inf", "0", "(0", "1", "(1", "2.5", "(3", "10", "-1",
        ])
        .to_string()
    }

    fn range_lex(&mut self) -> String {
        self.pick(&["-", "+", "[m1", "(m1", "[m5", "(m9", "[1", "[a", "(2"])
            .to_string()
    }

    fn index(&mut self) -> String {
        self.int(-6, 8)
    }

    pub fn command(&mut self) -> Cmd {
        let fam = *self
            .families
            .choose(&mut self.rng)
            .unwrap_or(&Family::Strings);
        let (args, compare) = match fam {
            Family::Strings => self.strings(),
            Family::Keys => self.keys(),
            Family::Hashes => self.hashes(),
            Family::Lists => self.lists(),
            Family::Sets => self.sets(),
            Family::ZSets => self.zsets(),
            Family::Bitmaps => self.bitmaps(),
            Family::HyperLogLog => self.hll(),
            Family::Geo => self.geo(),
        };
        Cmd {
            args: args.into_iter().map(|s| s.to_string()).collect(),
            compare,
        }
    }

    fn strings(&mut self) -> (Vec<String>, Compare) {
        let k = self.key("s");
        let v = self.value();
        let cmd: Vec<String> = match self.rng.gen_range(0..17) {
            0 => {
                let mut c = vec!["SET".into(), k, v];
                match self.rng.gen_range(0..6) {
                    0 => c.push("NX".into()),
                    1 => c.push("XX".into()),
                    2 => c.push("GET".into()),
                    3 => c.extend(["KEEPTTL".into()]),
                    4 => c.extend(["PXAT".into(), "4102444800000".into()]),
                    _ => {}
                }
                c
            }
            1 => vec!["GET".into(), k],
            2 => vec!["APPEND".into(), k, v],
            3 => vec!["INCR".into(), k],
            4 => vec!["INCRBY".into(), k, self.int(-5, 5)],
            5 => vec!["DECRBY".into(), k, self.int(-5, 5)],
            6 => {
                let by = self.pick(&["1.5", "-0.25", "3", "1e2", "abc"]);
                vec!["INCRBYFLOAT".into(), k, by.into()]
            }
            7 => vec!["STRLEN".into(), k],
            8 => vec!["GETRANGE".into(), k, self.index(), self.index()],
            9 => vec!["SETRANGE".into(), k, self.int(0, 12), v],
            10 => {
                let k2 = self.key("s");
                vec!["MSET".into(), k, v, k2, self.value()]
            }
            11 => {
                let k2 = self.key("s");
                vec!["MGET".into(), k, k2]
            }
            12 => vec!["SETNX".into(), k, v],
            13 => vec!["GETDEL".into(), k],
            14 => vec!["GETEX".into(), k, "PERSIST".into()],
            15 => {
                let k2 = self.key("s");
                vec!["LCS".into(), k, k2]
            }
            _ => vec!["GETSET".into(), k, v],
        };
        (cmd, Compare::Exact)
    }

    fn any_key(&mut self) -> String {
        let prefix = self.pick(&["s", "h", "l", "S", "z", "b", "p", "g"]);
        self.key(prefix)
    }

    fn keys(&mut self) -> (Vec<String>, Compare) {
        let k = self.any_key();
        let k2 = self.any_key();
        let cmd: Vec<String> = match self.rng.gen_range(0..14) {
            0 => vec!["DEL".into(), k, k2],
            1 => vec!["EXISTS".into(), k.clone(), k2, k],
            2 => vec!["TYPE".into(), k],
            3 => vec!["RENAME".into(), k, k2],
            4 => vec!["RENAMENX".into(), k, k2],
            5 => {
                let mut c = vec!["COPY".into(), k, k2];
                if self.chance(0.5) {
                    c.push("REPLACE".into());
                }
                c
            }
            6 => vec!["PERSIST".into(), k],
            7 => vec!["PEXPIREAT".into(), k, "4102444800000".into()],
            8 => vec!["EXPIRETIME".into(), k],
            9 => vec!["DBSIZE".into()],
            10 => return (vec!["KEYS".into(), "{t}*".into()], Compare::Unordered),
            11 => vec!["OBJECT".into(), "ENCODING".into(), k],
            12 => {
                let flag = self.pick(&["NX", "XX", "GT", "LT"]);
                vec!["EXPIREAT".into(), k, "4102444900".into(), flag.into()]
            }
            _ => vec!["TOUCH".into(), k, k2],
        };
        (cmd, Compare::Exact)
    }

    fn hashes(&mut self) -> (Vec<String>, Compare) {
        let k = self.key("h");
        let f = self.member();
        let v = self.value();
        let cmd: Vec<String> = match self.rng.gen_range(0..13) {
            0 | 1 => {
                let f2 = self.member();
                vec!["HSET".into(), k, f, v, f2, self.value()]
            }
            2 => vec!["HGET".into(), k, f],
            3 => vec!["HDEL".into(), k, f, self.member()],
            4 => vec!["HLEN".into(), k],
            5 => vec!["HEXISTS".into(), k, f],
            6 => vec!["HINCRBY".into(), k, f, self.int(-3, 3)],
            7 => vec!["HINCRBYFLOAT".into(), k, f, "0.5".into()],
            8 => return (vec!["HKEYS".into(), k], Compare::Unordered),
            9 => return (vec!["HGETALL".into(), k], Compare::Unordered),
            10 => vec!["HMGET".into(), k, f, self.member()],
            11 => vec!["HSETNX".into(), k, f, v],
            _ => vec!["HSTRLEN".into(), k, f],
        };
        (cmd, Compare::Exact)
    }

    fn lists(&mut self) -> (Vec<String>, Compare) {
        let k = self.key("l");
        let v = self.member();
        let side = |g: &mut Gen| g.pick(&["LEFT", "RIGHT"]).to_string();
        let cmd: Vec<String> = match self.rng.gen_range(0..21) {
            20 => {
                // Lists, sets and sorted sets all sort; ties and set order are Redis's too.
                let src = self.pick(&["l", "l", "S", "z"]);
                let mut c = vec!["SORT".into(), self.key(src)];
                if self.chance(0.5) {
                    c.push("ALPHA".into());
                }
                if self.chance(0.3) {
                    c.push("DESC".into());
                }
                if self.chance(0.3) {
                    c.extend(["LIMIT".into(), self.int(-1, 3), self.int(-1, 4)]);
                }
                if self.chance(0.3) {
                    c.extend(["STORE".into(), self.key("l")]);
                }
                c
            }
            0..=2 => {
                let push = self.pick(&["LPUSH", "RPUSH"]);
                let mut c = vec![push.into(), k, v];
                for _ in 0..self.rng.gen_range(0..3) {
                    c.push(self.member());
                }
                c
            }
            3 => vec![self.pick(&["LPUSHX", "RPUSHX"]).into(), k, v],
            4 => {
                let mut c = vec![self.pick(&["LPOP", "RPOP"]).into(), k];
                if self.chance(0.4) {
                    c.push(self.int(0, 3));
                }
                c
            }
            5 => vec!["LLEN".into(), k],
            6 => vec!["LINDEX".into(), k, self.index()],
            7 => vec!["LSET".into(), k, self.index(), v],
            8 | 9 => vec!["LRANGE".into(), k, self.index(), self.index()],
            10 => vec!["LTRIM".into(), k, self.index(), self.index()],
            11 => vec!["LREM".into(), k, self.int(-2, 2), v],
            12 => {
                let at = self.pick(&["BEFORE", "AFTER"]);
                vec!["LINSERT".into(), k, at.into(), self.member(), v]
            }
            13 => {
                let mut c = vec!["LPOS".into(), k, v];
                if self.chance(0.5) {
                    c.extend(["RANK".into(), self.pick(&["1", "-1", "2", "-2"]).into()]);
                }
                if self.chance(0.5) {
                    c.extend(["COUNT".into(), self.int(0, 3)]);
                }
                if self.chance(0.3) {
                    c.extend(["MAXLEN".into(), self.int(0, 5)]);
                }
                c
            }
            14 | 15 => {
                let k2 = self.key("l");
                vec!["LMOVE".into(), k, k2, side(self), side(self)]
            }
            16 => vec!["RPOPLPUSH".into(), k, self.key("l")],
            17 => {
                let k2 = self.key("l");
                let mut c = vec!["LMPOP".into(), "2".into(), k, k2, side(self)];
                if self.chance(0.5) {
                    c.extend(["COUNT".into(), self.int(1, 3)]);
                }
                c
            }
            18 => vec![
                self.pick(&["BLPOP", "BRPOP"]).into(),
                k,
                self.key("l"),
                "0.01".into(),
            ],
            _ => {
                let k2 = self.key("l");
                vec![
                    "BLMOVE".into(),
                    k,
                    k2,
                    side(self),
                    side(self),
                    "0.01".into(),
                ]
            }
        };
        (cmd, Compare::Exact)
    }

    fn sets(&mut self) -> (Vec<String>, Compare) {
        let k = self.key("S");
        let m = self.member();
        let cmd: Vec<String> = match self.rng.gen_range(0..16) {
            0..=2 => {
                let mut c = vec!["SADD".into(), k, m];
                for _ in 0..self.rng.gen_range(0..4) {
                    c.push(self.member());
                }
                c
            }
            3 => vec!["SREM".into(), k, m, self.member()],
            4 => vec!["SCARD".into(), k],
            5 => vec!["SISMEMBER".into(), k, m],
            6 => vec!["SMISMEMBER".into(), k, m, self.member()],
            7 => return (vec!["SMEMBERS".into(), k], Compare::Unordered),
            8 => vec!["SMOVE".into(), k, self.key("S"), m],
            9 | 10 => {
                let op = self.pick(&["SINTER", "SUNION", "SDIFF"]);
                let c = vec![op.into(), k, self.key("S"), self.key("S")];
                return (c, Compare::Unordered);
            }
            11 | 12 => {
                let op = self.pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]);
                vec![op.into(), self.key("S"), k, self.key("S")]
            }
            13 => {
                let mut c = vec!["SINTERCARD".into(), "2".into(), k, self.key("S")];
                if self.chance(0.5) {
                    c.extend(["LIMIT".into(), self.int(0, 3)]);
                }
                c
            }
            14 => {
                let c = vec!["SRANDMEMBER".into(), k, self.int(-5, 5)];
                return (c, Compare::Shape);
            }
            _ => {
                let c = vec!["SSCAN".into(), k, "0".into(), "COUNT".into(), "1000".into()];
                return (c, Compare::Unordered);
            }
        };
        (cmd, Compare::Exact)
    }

    /// Lex ranges on sorted sets whose members all score 0: Redis leaves them unspecified when
    /// scores differ, so they get keys of their own.
    fn zsets_lex(&mut self) -> (Vec<String>, Compare) {
        let k = format!("{{t}}y{}", self.rng.gen_range(0..3));
        let (min, max) = (self.range_lex(), self.range_lex());
        let cmd: Vec<String> = match self.rng.gen_range(0..7) {
            0 | 1 => {
                let mut c = vec!["ZADD".into(), k];
                for _ in 0..self.rng.gen_range(1..4) {
                    c.push("0".into());
                    c.push(self.member());
                }
                c
            }
            2 => vec!["ZLEXCOUNT".into(), k, min, max],
            3 => {
                let op = self.pick(&["ZRANGEBYLEX", "ZREVRANGEBYLEX"]);
                let mut c = vec![op.into(), k, min, max];
                if self.chance(0.3) {
                    c.extend(["LIMIT".into(), self.int(0, 2), self.int(-1, 3)]);
                }
                c
            }
            4 => {
                let mut c = vec!["ZRANGE".into(), k, min, max, "BYLEX".into()];
                if self.chance(0.4) {
                    c.push("REV".into());
                }
                c
            }
            5 => vec!["ZREMRANGEBYLEX".into(), k, min, max],
            _ => vec!["ZRANGE".into(), k, "0".into(), "-1".into()],
        };
        (cmd, Compare::Exact)
    }

    fn zsets(&mut self) -> (Vec<String>, Compare) {
        if self.chance(0.25) {
            return self.zsets_lex();
        }
        let k = self.key("z");
        let m = self.member();
        let cmd: Vec<String> = match self.rng.gen_range(0..26) {
            0..=3 => {
                let mut c = vec!["ZADD".into(), k];
                for flag in ["NX", "XX", "GT", "LT", "CH"] {
                    if self.chance(0.1) {
                        c.push(flag.into());
                    }
                }
                if self.chance(0.1) {
                    c.push("INCR".into());
                    c.extend([self.score(), m]);
                } else {
                    for _ in 0..self.rng.gen_range(1..4) {
                        c.push(self.score());
                        c.push(self.member());
                    }
                }
                c
            }
            4 => vec!["ZINCRBY".into(), k, self.score(), m],
            5 => vec!["ZREM".into(), k, m, self.member()],
            6 => vec!["ZCARD".into(), k],
            7 => vec!["ZSCORE".into(), k, m],
            8 => vec!["ZMSCORE".into(), k, m, self.member()],
            9 => vec![self.pick(&["ZRANK", "ZREVRANK"]).into(), k, m],
            10 => vec!["ZCOUNT".into(), k, self.range_score(), self.range_score()],
            11 => vec!["ZCOUNT".into(), k, self.range_score(), "+inf".into()],
            12 | 13 => {
                let mut c = vec!["ZRANGE".into(), k];
                if self.chance(0.5) {
                    c.extend([self.index(), self.index()]);
                } else {
                    c.extend([self.range_score(), self.range_score(), "BYSCORE".into()]);
                }
                if self.chance(0.3) {
                    c.push("REV".into());
                }
                if c.len() == 5 && self.chance(0.3) {
                    c.extend(["LIMIT".into(), self.int(0, 2), self.int(-1, 3)]);
                }
                if self.chance(0.5) {
                    c.push("WITHSCORES".into());
                }
                c
            }
            14 => {
                let op = self.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]);
                let mut c = vec![op.into(), k, self.range_score(), self.range_score()];
                if self.chance(0.5) {
                    c.push("WITHSCORES".into());
                }
                c
            }
            15 => vec!["ZSCORE".into(), k, self.member()],
            16 => vec!["ZREMRANGEBYRANK".into(), k, self.index(), self.index()],
            17 => vec![
                "ZREMRANGEBYSCORE".into(),
                k,
                self.range_score(),
                self.range_score(),
            ],
            18 => vec!["ZREVRANK".into(), k, self.member()],
            19 => {
                let mut c = vec![self.pick(&["ZPOPMIN", "ZPOPMAX"]).into(), k];
                if self.chance(0.5) {
                    c.push(self.int(0, 3));
                }
                c
            }
            20 => {
                let mut c = vec!["ZMPOP".into(), "2".into(), k, self.key("z")];
                c.push(self.pick(&["MIN", "MAX"]).into());
                if self.chance(0.5) {
                    c.extend(["COUNT".into(), self.int(1, 3)]);
                }
                c
            }
            21 | 22 => {
                let op = self.pick(&["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]);
                let mut c = vec![op.into(), self.key("z"), "2".into(), k, self.key("z")];
                if op != "ZDIFFSTORE" {
                    if self.chance(0.4) {
                        c.extend(["WEIGHTS".into(), "2".into(), "0.5".into()]);
                    }
                    if self.chance(0.4) {
                        c.extend(["AGGREGATE".into(), self.pick(&["SUM", "MIN", "MAX"]).into()]);
                    }
                }
                c
            }
            23 => {
                let op = self.pick(&["ZUNION", "ZINTER", "ZDIFF"]);
                vec![op.into(), "2".into(), k, self.key("z"), "WITHSCORES".into()]
            }
            24 => vec![
                "ZRANGESTORE".into(),
                self.key("z"),
                k,
                self.index(),
                self.index(),
            ],
            _ => {
                let c = vec!["ZRANDMEMBER".into(), k, self.int(-4, 4)];
                return (c, Compare::Shape);
            }
        };
        (cmd, Compare::Exact)
    }

    fn bitmaps(&mut self) -> (Vec<String>, Compare) {
        let k = self.key("b");
        let unit = |g: &mut Gen| g.pick(&["BYTE", "BIT"]).to_string();
        let cmd: Vec<String> = match self.rng.gen_range(0..9) {
            0 | 1 => vec!["SETBIT".into(), k, self.int(0, 90), self.int(0, 1)],
            2 => vec!["GETBIT".into(), k, self.int(0, 100)],
            3 => {
                let mut c = vec!["BITCOUNT".into(), k];
                if self.chance(0.6) {
                    c.extend([self.index(), self.index()]);
                    if self.chance(0.5) {
                        c.push(unit(self));
                    }
                }
                c
            }
            4 => {
                let mut c = vec!["BITPOS".into(), k, self.int(0, 1)];
                if self.chance(0.5) {
                    c.push(self.index());
                    if self.chance(0.5) {
                        c.push(self.index());
                        if self.chance(0.5) {
                            c.push(unit(self));
                        }
                    }
                }
                c
            }
            5 => {
                let op = self.pick(&["AND", "OR", "XOR"]);
                vec!["BITOP".into(), op.into(), self.key("b"), k, self.key("b")]
            }
            6 => vec!["BITOP".into(), "NOT".into(), self.key("b"), k],
            7 => {
                let ty = self.pick(&["u8", "i5", "u4", "i16", "u1"]);
                let mut c = vec!["BITFIELD".into(), k];
                if self.chance(0.5) {
                    c.extend([
                        "OVERFLOW".into(),
                        self.pick(&["WRAP", "SAT", "FAIL"]).into(),
                    ]);
                }
                match self.rng.gen_range(0..3) {
                    0 => c.extend(["GET".into(), ty.into(), self.int(0, 40)]),
                    1 => c.extend([
                        "SET".into(),
                        ty.into(),
                        self.int(0, 40),
                        self.int(-200, 200),
                    ]),
                    _ => c.extend([
                        "INCRBY".into(),
                        ty.into(),
                        self.int(0, 40),
                        self.int(-50, 50),
                    ]),
                }
                c
            }
            _ => vec!["GET".into(), k],
        };
        (cmd, Compare::Exact)
    }

    fn hll(&mut self) -> (Vec<String>, Compare) {
        let k = self.key("p");
        let cmd: Vec<String> = match self.rng.gen_range(0..5) {
            0 | 1 => {
                let mut c = vec!["PFADD".into(), k];
                for _ in 0..self.rng.gen_range(0..20) {
                    c.push(self.int(0, 5000));
                }
                c
            }
            2 => vec!["PFCOUNT".into(), k, self.key("p")],
            3 => vec!["PFMERGE".into(), self.key("p"), k, self.key("p")],
            _ => vec!["GET".into(), k],
        };
        (cmd, Compare::Exact)
    }

    fn geo(&mut self) -> (Vec<String>, Compare) {
        let k = self.key("g");
        let m = format!("p{}", self.rng.gen_range(0..10));
        let lon = format!("{:.4}", 13.0 + self.rng.gen_range(0..200) as f64 * 0.01);
        let lat = format!("{:.4}", 38.0 + self.rng.gen_range(0..200) as f64 * 0.01);
        let cmd: Vec<String> = match self.rng.gen_range(0..9) {
            0..=2 => vec!["GEOADD".into(), k, lon, lat, m],
            3 => vec!["GEOPOS".into(), k, m, "p1".into()],
            4 => {
                let unit = self.pick(&["m", "km", "mi", "ft"]);
                vec!["GEODIST".into(), k, m, "p2".into(), unit.into()]
            }
            5 => vec!["GEOHASH".into(), k, m, "p3".into()],
            6 | 7 => {
                let mut c = vec!["GEOSEARCH".into(), k];
                if self.chance(0.5) {
                    c.extend(["FROMLONLAT".into(), lon, lat]);
                } else {
                    c.extend(["FROMMEMBER".into(), m]);
                }
                if self.chance(0.5) {
                    c.extend(["BYRADIUS".into(), self.int(1, 200), "km".into()]);
                } else {
                    c.extend([
                        "BYBOX".into(),
                        self.int(1, 300),
                        self.int(1, 300),
                        "km".into(),
                    ]);
                }
                c.push(self.pick(&["ASC", "DESC"]).into());
                if self.chance(0.4) {
                    c.extend(["COUNT".into(), self.int(1, 4)]);
                }
                for w in ["WITHCOORD", "WITHDIST", "WITHHASH"] {
                    if self.chance(0.4) {
                        c.push(w.into());
                    }
                }
                c
            }
            _ => vec![
                "GEORADIUS".into(),
                k,
                lon,
                lat,
                self.int(1, 200),
                "km".into(),
                "WITHDIST".into(),
                "ASC".into(),
            ],
        };
        (cmd, Compare::Exact)
    }
}

/// `r` with the orders Redis leaves unspecified sorted away (RESP2 flat pairs are sorted as
/// pairs when `pairs`).
pub fn normalize(r: &Reply, compare: Compare, pairs: bool) -> Reply {
    match (compare, r) {
        (Compare::Exact, _) => r.clone(),
        (Compare::Shape, Reply::Array(v) | Reply::Set(v)) => Reply::Int(v.len() as i64),
        (Compare::Shape, Reply::Bulk(_)) => Reply::Int(1),
        (Compare::Shape, other) => other.clone(),
        (Compare::Unordered, Reply::Array(v) | Reply::Set(v)) => {
            // SSCAN: [cursor, members]
            if v.len() == 2 && matches!(v[1], Reply::Array(_) | Reply::Set(_)) {
                return Reply::Array(vec![v[0].clone(), normalize(&v[1], compare, pairs)]);
            }
            let mut items: Vec<Vec<Reply>> = if pairs {
                v.chunks(2).map(<[Reply]>::to_vec).collect()
            } else {
                v.iter().map(|x| vec![x.clone()]).collect()
            };
            items.sort_by_key(|x| format!("{x:?}"));
            Reply::Array(items.into_iter().flatten().collect())
        }
        (Compare::Unordered, Reply::Map(m)) => {
            let mut items = m.clone();
            items.sort_by_key(|x| format!("{x:?}"));
            Reply::Map(items)
        }
        (Compare::Unordered, other) => other.clone(),
    }
}
