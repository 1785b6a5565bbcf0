//! Kernel symbols from the dump alone: the kallsyms tables that VMCOREINFO points at.
//!
//! Since Linux 6.0 VMCOREINFO carries the addresses of the kernel's compressed symbol
//! table (`SYMBOL(kallsyms_names)`, `kallsyms_num_syms`, `kallsyms_token_table`,
//! `kallsyms_token_index`, and `kallsyms_offsets` with `kallsyms_relative_base`, or
//! `kallsyms_addresses`), so every symbol of the kernel image (not of modules) can be read
//! from the dump's memory without a vmlinux or debuginfo. The tables sit in the image's
//! rodata and are written at build time by `scripts/kallsyms.c`; `kernel/kallsyms.c`
//! reads them:
//!
//! | table | layout |
//! |---|---|
//! | `kallsyms_num_syms` | `u32`: the number of symbols, N |
//! | `kallsyms_names` | N entries, in address order: a length, then that many bytes, each an index into the token table |
//! | `kallsyms_token_table` | 256 NUL-terminated strings, one per byte value |
//! | `kallsyms_token_index` | 256 `u16`: where each token starts in the token table |
//! | `kallsyms_offsets` | N `i32` (with `kallsyms_relative_base`, a pointer-sized value) |
//! | `kallsyms_addresses` | N pointer-sized absolute addresses (kernels built without base-relative kallsyms, until 6.11) |
//!
//! A name expands to its tokens concatenated; the first character of the expansion is the
//! symbol's type letter (`T`, `t`, `D`, ...), kept here as [`Symbol::kind`].
//!
//! **Name lengths.** Until 6.0 the length is one byte. From 6.1 ("big" symbols) a length
//! byte with bit 7 set is followed by a second byte and the length is
//! `(b0 & 0x7f) | (b1 << 7)`. The two encodings differ only for names that compress to
//! 128 bytes or more, and nothing in the tables tells them apart, so the choice follows
//! `OSRELEASE` (6.1 and later, or an unparsable release: big lengths) and
//! [`Options::long_names`] overrides it.
//!
//! **Addresses** ([`AddressEncoding`]): absolute `kallsyms_addresses` (until 6.11);
//! base-relative offsets, `relative_base + (u32)offset` (4.6 up to 7.0); ABSOLUTE_PERCPU
//! (4.6 up to 6.15, x86_64 SMP: a non-negative offset is the absolute value, a per-CPU
//! offset, and a negative one means `relative_base - 1 - offset`); place-relative (7.0
//! and later: `&kallsyms_offsets[i] + offset`, and no `kallsyms_relative_base` any more).
//!
//! **Sizes** are not stored. [`Kallsyms::addr2sym`] estimates a symbol's size as the
//! distance to the next higher distinct address, capped at [`MAX_SYMBOL_SIZE`] (a symbol
//! before a gap, such as the last per-CPU symbol or the last symbol of the image, would
//! otherwise claim everything up to the next one). The symbol at the highest address has
//! size 0: only its own address resolves to it.
//!
//! Only 64-bit kernels are supported (pointer-sized values are read as 8 bytes); either
//! byte order is (it is detected from `kallsyms_token_index`, see [`Options::big_endian`]).
//! Every count and length read from the dump is bounded before it sizes an allocation,
//! and a table that breaks the kernel's own rules is an [`Error::Corrupt`] naming the
//! table, the symbol and what was expected.

use std::fmt;

use crate::vmcoreinfo::VmcoreInfo;

/// Most symbols a table may declare; real kernels hold a few hundred thousand.
pub const MAX_SYMBOLS: u32 = 10_000_000;

/// Cap on the estimated size of a symbol (kallsyms stores no sizes), 64 KiB.
pub const MAX_SYMBOL_SIZE: u64 = 64 * 1024;

/// Longest expanded name (type letter included) accepted: the kernel's `KSYM_NAME_LEN`,
/// 512 since 6.1 (128 before). `scripts/kallsyms.c` leaves out any symbol of
/// `KSYM_NAME_LEN` characters or more, so a stored name (its letter, then at most 511
/// characters) never exceeds it. A 2-byte entry can name a token of any length, so without
/// this cap each name could expand to the token table's size.
pub const MAX_NAME_LEN: usize = 512;

/// Most bytes all names may expand to together (type letters included). A real kernel's
/// names take a few MiB (4.1 MB for the 163,205 symbols of a 6.12 x86_64 kernel, 25 bytes
/// each on average); 256 MiB is [`MAX_SYMBOLS`] names of about that length. Even capped at
/// [`MAX_NAME_LEN`], 10 M two-byte entries could otherwise expand to 5 GB.
pub const MAX_NAMES_EXPANDED: usize = 256 << 20;

/// Reads of the names and token tables go in chunks of this size.
const CHUNK: u64 = 64 * 1024;
/// Bound of the token table when no other table bounds it: a `u16` offset plus a token.
const MAX_TOKEN_TABLE: u64 = 128 * 1024;
/// Bound of the names table when no other table bounds it.
const MAX_NAMES_TABLE: u64 = 256 << 20;
/// A failed chunk read is retried up to the end of the page holding the bytes needed.
const RETRY_PAGE: u64 = 4096;

const NAMES: &str = "kallsyms_names";
const NUM_SYMS: &str = "kallsyms_num_syms";
const TOKEN_TABLE: &str = "kallsyms_token_table";
const TOKEN_INDEX: &str = "kallsyms_token_index";
const OFFSETS: &str = "kallsyms_offsets";
const RELATIVE_BASE: &str = "kallsyms_relative_base";
const ADDRESSES: &str = "kallsyms_addresses";

/// Every kallsyms table VMCOREINFO may name; the nearest one above a table bounds it.
const ALL_TABLES: [&str; 7] = [NAMES, NUM_SYMS, TOKEN_TABLE, TOKEN_INDEX, OFFSETS, RELATIVE_BASE, ADDRESSES];

/// How [`Kallsyms::from_vmcoreinfo`] reads kernel virtual memory: fill the buffer with the
/// bytes at the address, or say why not.
pub type ReadMem<'a> = dyn Fn(u64, &mut [u8]) -> Result<(), String> + 'a;

type ReadFn<'a> = &'a ReadMem<'a>;

/// Errors of decoding kallsyms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// VMCOREINFO lacks the address of a table.
    #[error("VMCOREINFO has no SYMBOL({0}): this kernel does not export its kallsyms tables (Linux 6.0 and later do)")]
    Missing(&'static str),
    /// A table could not be read from the dump.
    #[error("cannot read {table} at {addr:#x} ({len} bytes): {cause}")]
    Read {
        /// The table.
        table: &'static str,
        /// The kernel virtual address read.
        addr: u64,
        /// How many bytes were asked for.
        len: u64,
        /// Why the read failed.
        cause: String,
    },
    /// A table holds something the kernel never writes.
    #[error("{table}{}: {expected}", symbol_note(.symbol))]
    Corrupt {
        /// The table at fault.
        table: &'static str,
        /// Index of the symbol being decoded (kernel table order), when there was one.
        symbol: Option<u32>,
        /// What was expected and what was found.
        expected: String,
    },
}

fn symbol_note(symbol: &Option<u32>) -> String {
    symbol.map(|i| format!(", symbol {i}")).unwrap_or_default()
}

fn corrupt(table: &'static str, symbol: Option<u32>, expected: String) -> Error {
    Error::Corrupt { table, symbol, expected }
}

/// How `kallsyms_offsets`/`kallsyms_addresses` give a symbol's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressEncoding {
    /// `kallsyms_addresses[i]`: absolute pointer-sized values (kernels without
    /// `CONFIG_KALLSYMS_BASE_RELATIVE`, until 6.11). Used when VMCOREINFO names
    /// `kallsyms_addresses` and not `kallsyms_offsets`.
    Absolute,
    /// `kallsyms_relative_base + (u32)kallsyms_offsets[i]` (4.6 up to 7.0). Used when
    /// VMCOREINFO names both tables and no offset is negative.
    BaseRelative,
    /// `CONFIG_KALLSYMS_ABSOLUTE_PERCPU` (4.6 up to 6.15, x86_64 SMP): a non-negative
    /// offset is the absolute address (per-CPU symbols, at small addresses), a negative one
    /// means `kallsyms_relative_base - 1 - offset`. Used when VMCOREINFO names both tables
    /// and some offset is negative (a base-relative offset would be 2 GiB or more past the
    /// lowest symbol, more than any kernel image).
    AbsolutePercpu,
    /// `&kallsyms_offsets[i] + kallsyms_offsets[i]` (7.0 and later, which dropped
    /// `kallsyms_relative_base`). Used when VMCOREINFO names `kallsyms_offsets` and not
    /// `kallsyms_relative_base`.
    PlaceRelative,
}

impl AddressEncoding {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            AddressEncoding::Absolute => "absolute",
            AddressEncoding::BaseRelative => "base-relative",
            AddressEncoding::AbsolutePercpu => "absolute-percpu",
            AddressEncoding::PlaceRelative => "place-relative",
        }
    }
}

/// Choices [`Kallsyms::from_vmcoreinfo_with`] otherwise makes from the dump; `None` is
/// "detect".
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Options {
    /// Two-byte ("big", 6.1+) name lengths; detected from `OSRELEASE`.
    pub long_names: Option<bool>,
    /// The address encoding; detected from which tables VMCOREINFO names and the signs of
    /// the offsets.
    pub address_encoding: Option<AddressEncoding>,
    /// Big-endian tables; detected from `kallsyms_token_index`, whose 256 entries start at
    /// 0 and increase strictly (little-endian wins when both orders fit).
    pub big_endian: Option<bool>,
}

/// One kernel symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Its address (kernel virtual; for x86_64 per-CPU symbols under ABSOLUTE_PERCPU, the
    /// offset in the per-CPU area).
    pub address: u64,
    /// Its name, without the type letter.
    pub name: String,
    /// Its type letter as `/proc/kallsyms` shows it (`T`, `t`, `D`, `d`, `R`, `B`, `A`, ...).
    pub kind: char,
}

/// Symbols sharing one address, with the size estimated for them.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// First index in `symbols` with this address.
    first: u32,
    /// The index `addr2sym` answers: the one the kernel's own table lists first.
    preferred: u32,
    /// Distance to the next higher address, capped; 0 for the highest address.
    size: u64,
}

/// Where a symbol table came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The kernel's own tables, decoded from the dump, read as detected (or told).
    Tables {
        /// The address encoding.
        encoding: AddressEncoding,
        /// Names with two-byte ("big", 6.1+) lengths.
        long_names: bool,
        /// Big-endian tables.
        big_endian: bool,
    },
    /// A list given as a file (System.map, /proc/kallsyms: [`crate::symbol_list`]).
    List {
        /// The file.
        path: String,
        /// What its kernel-image addresses were moved by (the KASLR offset).
        offset: u64,
        /// Whether `offset` was measured (VMCOREINFO's `SYMBOL(_stext)` against the link
        /// address a System.map gives), rather than taken from KERNELOFFSET or 0 for a
        /// list of running addresses: then it is a KASLR offset found a second way.
        measured: bool,
        /// How many of VMCOREINFO's `SYMBOL()`s it was checked against.
        checked: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Tables { encoding, long_names, big_endian } => write!(
                f,
                "the dump's kallsyms ({}, {} name lengths, {})",
                encoding.name(),
                if *long_names { "two-byte" } else { "one-byte" },
                if *big_endian { "big-endian" } else { "little-endian" }
            ),
            Origin::List { path, offset, checked, .. } => {
                write!(f, "{path} (moved by {offset:#x}, checked against {checked} VMCOREINFO symbols)")
            }
        }
    }
}

/// The kernel's symbol table.
pub struct Kallsyms {
    /// Sorted by (address, name).
    symbols: Vec<Symbol>,
    /// Indices into `symbols`, sorted by (name, address).
    by_name: Vec<u32>,
    /// One per distinct address, ascending.
    groups: Vec<Group>,
    origin: Origin,
}

impl fmt::Debug for Kallsyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kallsyms {{ {} symbols from {} }}", self.symbols.len(), self.origin)
    }
}

impl Kallsyms {
    /// Decodes the kallsyms tables VMCOREINFO names, detecting everything
    /// ([`Options::default`]). `read` reads kernel virtual memory (the tables live in the
    /// kernel image's rodata).
    pub fn from_vmcoreinfo(vi: &VmcoreInfo, read: &ReadMem<'_>) -> Result<Kallsyms, Error> {
        Kallsyms::from_vmcoreinfo_with(vi, read, &Options::default())
    }

    /// Decodes the kallsyms tables VMCOREINFO names, with the choices `opts` fixes.
    pub fn from_vmcoreinfo_with(vi: &VmcoreInfo, read: &ReadMem<'_>, opts: &Options) -> Result<Kallsyms, Error> {
        let layout = Layout::from_vmcoreinfo(vi);
        let names_addr = layout.require(NAMES)?;
        let num_addr = layout.require(NUM_SYMS)?;
        let table_addr = layout.require(TOKEN_TABLE)?;
        let index_addr = layout.require(TOKEN_INDEX)?;

        let index_raw = read_exact(read, TOKEN_INDEX, index_addr, 512)?;
        let endian = match opts.big_endian {
            Some(big) => Endian { big },
            None => detect_endian(&index_raw)?,
        };

        let num_raw = read_exact(read, NUM_SYMS, num_addr, 4)?;
        let count = endian.u32(&num_raw, 0);
        if count == 0 || count > MAX_SYMBOLS {
            return Err(corrupt(NUM_SYMS, None, format!("between 1 and {MAX_SYMBOLS} symbols, found {count}")));
        }

        let encoding = match opts.address_encoding {
            Some(e) => e,
            None => layout.guess_encoding()?,
        };
        let (array, width) = match encoding {
            AddressEncoding::Absolute => (ADDRESSES, 8),
            _ => (OFFSETS, 4),
        };
        let array_addr = layout.require(array)?;
        let array_len = u64::from(count) * width;
        if let Some((room, next)) = layout.room_after(array_addr) {
            if room < array_len {
                return Err(corrupt(
                    NUM_SYMS,
                    None,
                    format!(
                        "{count} symbols need {array_len:#x} bytes of {array} at {array_addr:#x}, \
                         but {next} starts {room:#x} bytes after it"
                    ),
                ));
            }
        }

        let tokens = Tokens::load(read, &layout, table_addr, &index_raw, endian)?;
        let long_names = opts.long_names.unwrap_or_else(|| long_names_for(vi.osrelease()));
        let names = decode_names(read, &layout, names_addr, count, long_names, &tokens, MAX_NAMES_EXPANDED)?;

        let raw = read_exact(read, array, array_addr, array_len)?;
        let (encoding, addresses) = decode_addresses(read, &layout, encoding, opts, endian, array_addr, &raw, count)?;
        if let Some(i) = addresses.windows(2).position(|w| matches!(w, [a, b] if b < a)) {
            let (prev, cur) = (addresses.get(i).copied(), addresses.get(i + 1).copied());
            return Err(corrupt(
                array,
                u32::try_from(i + 1).ok(),
                format!(
                    "addresses in ascending order (the kernel sorts the table and searches it in halves); \
                     found {:#x} after {:#x} under the {} encoding: the table is corrupt or the encoding \
                     is not the one detected",
                    cur.unwrap_or_default(),
                    prev.unwrap_or_default(),
                    encoding.name()
                ),
            ));
        }

        let symbols =
            names.into_iter().zip(addresses).map(|((kind, name), address)| Symbol { address, name, kind }).collect();
        Ok(Kallsyms::build(symbols, Origin::Tables { encoding, long_names, big_endian: endian.big }))
    }

    /// A table of `symbols` listed elsewhere, in the order the kernel's table would have
    /// them: of several at one address, `addr2sym` answers the first.
    pub fn from_list(symbols: Vec<Symbol>, origin: Origin) -> Kallsyms {
        Kallsyms::build(symbols, origin)
    }

    /// The same table, said to come from `origin`.
    pub fn with_origin(self, origin: Origin) -> Kallsyms {
        Kallsyms { origin, ..self }
    }

    fn build(symbols: Vec<Symbol>, origin: Origin) -> Kallsyms {
        // (symbol, index in the kernel's table)
        let mut entries: Vec<(Symbol, u32)> = symbols.into_iter().zip(0u32..).collect();
        // The kernel's table is already in address order: the adaptive stable sort only has
        // to order the names within each address.
        entries.sort_by(|(a, i), (b, j)| {
            a.address.cmp(&b.address).then_with(|| a.name.as_bytes().cmp(b.name.as_bytes())).then(i.cmp(j))
        });

        let mut groups: Vec<Group> = Vec::new();
        let mut best_seq = 0u32;
        for (pos, (sym, seq)) in (0u32..).zip(&entries) {
            let last = groups.last().and_then(|g| entries.get(g.first as usize)).map(|(s, _)| s.address);
            if last == Some(sym.address) {
                if *seq < best_seq {
                    best_seq = *seq;
                    if let Some(g) = groups.last_mut() {
                        g.preferred = pos;
                    }
                }
                continue;
            }
            if let (Some(prev), Some(g)) = (last, groups.last_mut()) {
                g.size = sym.address.saturating_sub(prev).min(MAX_SYMBOL_SIZE);
            }
            best_seq = *seq;
            groups.push(Group { first: pos, preferred: pos, size: 0 });
        }

        let symbols: Vec<Symbol> = entries.into_iter().map(|(s, _)| s).collect();
        let mut keyed: Vec<(&[u8], u32)> = symbols.iter().map(|s| s.name.as_bytes()).zip(0u32..).collect();
        keyed.sort_unstable();
        let by_name = keyed.into_iter().map(|(_, i)| i).collect();
        Kallsyms { symbols, by_name, groups, origin }
    }

    /// Every symbol, sorted by address, then by name (bytewise).
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// The address of the symbol called `name`; of several, the lowest address.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        let name_of = |i: &u32| self.symbols.get(*i as usize).map(|s| s.name.as_str()).unwrap_or_default();
        let at = self.by_name.partition_point(|i| name_of(i) < name);
        let sym = self.by_name.get(at).and_then(|&i| self.symbols.get(i as usize))?;
        (sym.name == name).then_some(sym.address)
    }

    /// The symbol containing `addr`, with `addr`'s offset into it and its estimated size
    /// (see the module documentation): the symbol at the highest address not above `addr`,
    /// when `addr` is less than its size past it (or is its address). Of several symbols at
    /// one address, the one the kernel's table lists first, which is the one the kernel
    /// itself prints for the address.
    pub fn addr2sym(&self, addr: u64) -> Option<(&Symbol, u64, u64)> {
        let address_of = |g: &Group| self.symbols.get(g.first as usize).map(|s| s.address).unwrap_or(u64::MAX);
        let at = self.groups.partition_point(|g| address_of(g) <= addr);
        let group = self.groups.get(at.checked_sub(1)?)?;
        let sym = self.symbols.get(group.preferred as usize)?;
        let offset = addr.checked_sub(sym.address)?;
        (offset < group.size || offset == 0).then_some((sym, offset, group.size))
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether there are no symbols (never, for a decoded table).
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Where the table came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Whether a kernel release uses two-byte name lengths: 6.1 and later, and any release
/// that does not start with `MAJOR.MINOR` (VMCOREINFO exports kallsyms from 6.0 on, so an
/// unknown release is most likely a later one).
fn long_names_for(release: Option<&str>) -> bool {
    let parse = |rel: &str| -> Option<(u32, u32)> {
        let mut parts = rel.split(|c: char| !c.is_ascii_digit());
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    release.and_then(parse).is_none_or(|v| v >= (6, 1))
}

/// The table addresses VMCOREINFO gives.
struct Layout {
    tables: Vec<(&'static str, u64)>,
}

impl Layout {
    fn from_vmcoreinfo(vi: &VmcoreInfo) -> Layout {
        Layout { tables: ALL_TABLES.iter().filter_map(|&t| vi.symbol(t).map(|a| (t, a))).collect() }
    }

    fn get(&self, table: &str) -> Option<u64> {
        self.tables.iter().find(|(t, _)| *t == table).map(|&(_, a)| a)
    }

    fn require(&self, table: &'static str) -> Result<u64, Error> {
        self.get(table).ok_or(Error::Missing(table))
    }

    /// Distance from `start` to the nearest other table above it, and that table's name.
    fn room_after(&self, start: u64) -> Option<(u64, &'static str)> {
        self.tables.iter().filter(|&&(_, a)| a > start).map(|&(t, a)| (a - start, t)).min()
    }

    fn guess_encoding(&self) -> Result<AddressEncoding, Error> {
        match (self.get(OFFSETS), self.get(RELATIVE_BASE), self.get(ADDRESSES)) {
            // Refined to AbsolutePercpu from the offsets' signs.
            (Some(_), Some(_), _) => Ok(AddressEncoding::BaseRelative),
            (Some(_), None, _) => Ok(AddressEncoding::PlaceRelative),
            (None, _, Some(_)) => Ok(AddressEncoding::Absolute),
            (None, _, None) => Err(Error::Missing("kallsyms_offsets or kallsyms_addresses")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Endian {
    big: bool,
}

impl Endian {
    fn bytes<const N: usize>(raw: &[u8], at: usize) -> [u8; N] {
        let mut b = [0u8; N];
        if let Some(src) = at.checked_add(N).and_then(|end| raw.get(at..end)) {
            b.copy_from_slice(src);
        }
        b
    }
    fn u16(self, raw: &[u8], at: usize) -> u16 {
        let b = Endian::bytes(raw, at);
        if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }
    fn u32(self, raw: &[u8], at: usize) -> u32 {
        let b = Endian::bytes(raw, at);
        if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
    fn u64(self, raw: &[u8], at: usize) -> u64 {
        let b = Endian::bytes(raw, at);
        if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        }
    }
}

/// The byte order under which the 256 token offsets start at 0 and increase strictly
/// (every token is at least its NUL), little-endian first.
fn detect_endian(index_raw: &[u8]) -> Result<Endian, Error> {
    let fits = |e: Endian| {
        let v: Vec<u16> = (0..256).map(|i| e.u16(index_raw, i * 2)).collect();
        v.first() == Some(&0) && v.windows(2).all(|w| matches!(w, [a, b] if a < b))
    };
    [Endian { big: false }, Endian { big: true }].into_iter().find(|&e| fits(e)).ok_or_else(|| {
        let first: Vec<String> = index_raw.iter().take(8).map(|b| format!("{b:02x}")).collect();
        corrupt(
            TOKEN_INDEX,
            None,
            format!(
                "256 token offsets that start at 0 and increase strictly, in either byte order; \
                 the table starts with bytes {}",
                first.join(" ")
            ),
        )
    })
}

/// Reads `len` bytes of `table` at `addr`; `len` is bounded by the caller.
fn read_exact(read: ReadFn<'_>, table: &'static str, addr: u64, len: u64) -> Result<Vec<u8>, Error> {
    let err = |cause: String| Error::Read { table, addr, len, cause };
    if addr.checked_add(len).is_none() {
        return Err(err("the table would run past the end of the address space".into()));
    }
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| err("too large for this machine".into()))?];
    read(addr, &mut buf).map_err(err)?;
    Ok(buf)
}

/// A table of unknown length, read in chunks as far as it is needed, never past `limit`
/// bytes.
struct Lazy<'r> {
    table: &'static str,
    start: u64,
    limit: u64,
    /// What ends the table at `limit`.
    bound: &'static str,
    data: Vec<u8>,
    read: ReadFn<'r>,
}

impl<'r> Lazy<'r> {
    /// The table `table` at `start`, bounded by the next table above it or `max` bytes.
    fn new(read: ReadFn<'r>, layout: &Layout, table: &'static str, start: u64, max: u64) -> Lazy<'r> {
        let (limit, bound) = match layout.room_after(start) {
            Some((room, next)) if room <= max => (room, next),
            _ => (max, "the largest size accepted"),
        };
        let limit = limit.min(u64::MAX - start);
        Lazy { table, start, limit, bound, data: Vec::new(), read }
    }

    /// Makes the first `end` bytes available; `false` when `end` is past the table's limit.
    fn ensure(&mut self, end: u64) -> Result<bool, Error> {
        if end > self.limit {
            return Ok(false);
        }
        while (self.data.len() as u64) < end {
            let have = self.data.len() as u64;
            // `start + limit` does not overflow (see `new`), nor does anything below it.
            let addr = self.start + have;
            let want = (self.limit - have).min(CHUNK);
            // A short retry: only through the end of the page holding the byte needed next,
            // for a table that ends right before unreadable memory.
            let short = (addr | (RETRY_PAGE - 1)).checked_add(1).map_or(want, |page_end| page_end - addr).min(want);
            let mut result = self.read_chunk(addr, want);
            if result.is_err() && short < want {
                result = self.read_chunk(addr, short);
            }
            result?;
        }
        Ok(true)
    }

    fn read_chunk(&mut self, addr: u64, len: u64) -> Result<(), Error> {
        let old = self.data.len();
        // `len` is at most CHUNK.
        self.data.resize(old + len as usize, 0);
        let buf = self.data.get_mut(old..).unwrap_or_default();
        if let Err(cause) = (self.read)(addr, buf) {
            self.data.truncate(old);
            return Err(Error::Read { table: self.table, addr, len, cause });
        }
        Ok(())
    }

    /// Bytes `from..to`, which `ensure(to)` made available.
    fn slice(&self, from: u64, to: u64) -> &[u8] {
        self.data.get(from as usize..to as usize).unwrap_or_default()
    }
}

/// The 256 tokens; `None` for an entry of `kallsyms_token_index` that points at no
/// NUL-terminated string inside the token table (reported when a name uses it).
struct Tokens {
    table: Vec<u8>,
    spans: Vec<Option<(usize, usize)>>,
    offsets: Vec<u16>,
    limit: u64,
    bound: &'static str,
}

impl Tokens {
    fn load(
        read: ReadFn<'_>,
        layout: &Layout,
        table_addr: u64,
        index_raw: &[u8],
        endian: Endian,
    ) -> Result<Tokens, Error> {
        let mut table = Lazy::new(read, layout, TOKEN_TABLE, table_addr, MAX_TOKEN_TABLE);
        let offsets: Vec<u16> = (0..256).map(|i| endian.u16(index_raw, i * 2)).collect();
        let mut spans = Vec::with_capacity(256);
        for &off in &offsets {
            let start = u64::from(off);
            let mut end = start;
            let span = loop {
                if !table.ensure(end + 1)? {
                    break None;
                }
                if table.slice(end, end + 1) == [0] {
                    break Some((start as usize, end as usize));
                }
                end += 1;
            };
            spans.push(span);
        }
        let (limit, bound) = (table.limit, table.bound);
        Ok(Tokens { table: table.data, spans, offsets, limit, bound })
    }

    /// The token for byte `b`, if its index entry points at one.
    fn slice(&self, b: u8) -> Option<&[u8]> {
        let (s, e) = self.spans.get(usize::from(b)).copied().flatten()?;
        self.table.get(s..e)
    }

    /// The error for symbol `symbol` using byte `b`, whose token is missing.
    fn error(&self, b: u8, symbol: u32) -> Error {
        let off = self.offsets.get(usize::from(b)).copied().unwrap_or_default();
        corrupt(
            TOKEN_INDEX,
            Some(symbol),
            format!(
                "entry {b:#04x} (used by this symbol's name) to point at a NUL-terminated token inside \
                 {TOKEN_TABLE}, which ends within {:#x} bytes ({}); it points at offset {off:#x}",
                self.limit, self.bound
            ),
        )
    }
}

/// Expands the `count` names of `kallsyms_names` into (type letter, name), each at most
/// [`MAX_NAME_LEN`] bytes and all together at most `max_total` bytes.
fn decode_names(
    read: ReadFn<'_>,
    layout: &Layout,
    names_addr: u64,
    count: u32,
    long_names: bool,
    tokens: &Tokens,
    max_total: usize,
) -> Result<Vec<(char, String)>, Error> {
    let mut table = Lazy::new(read, layout, NAMES, names_addr, MAX_NAMES_TABLE);
    // A count the table cannot hold fails below; do not trust it for the allocation.
    let mut out = Vec::with_capacity((count as usize).min(1 << 16));
    let mut expanded = Vec::with_capacity(128);
    let slices: Vec<Option<&[u8]>> = (0..=255u8).map(|b| tokens.slice(b)).collect();
    let mut pos = 0u64;
    let mut total = 0usize;
    for i in 0..count {
        let past_end = |what: String, table: &Lazy<'_>| {
            corrupt(
                NAMES,
                Some(i),
                format!("{what} inside the table, which ends after {:#x} bytes ({})", table.limit, table.bound),
            )
        };
        if !table.ensure(pos + 1)? {
            return Err(past_end(format!("a length byte at offset {pos:#x} of {count} names"), &table));
        }
        let b0 = u64::from(table.slice(pos, pos + 1).first().copied().unwrap_or_default());
        let (len, header) = if long_names && b0 & 0x80 != 0 {
            if !table.ensure(pos + 2)? {
                return Err(past_end(format!("a second length byte at offset {:#x}", pos + 1), &table));
            }
            let b1 = u64::from(table.slice(pos + 1, pos + 2).first().copied().unwrap_or_default());
            ((b0 & 0x7f) | (b1 << 7), 2)
        } else {
            (b0, 1)
        };
        if len == 0 {
            return Err(corrupt(
                NAMES,
                Some(i),
                format!("a name of at least one byte at offset {pos:#x}; its length is 0"),
            ));
        }
        let from = pos + header;
        let to = from + len;
        if !table.ensure(to)? {
            return Err(past_end(format!("a name of {len} bytes at offset {from:#x}"), &table));
        }
        expanded.clear();
        for &b in table.slice(from, to) {
            let token = slices.get(usize::from(b)).copied().flatten().ok_or_else(|| tokens.error(b, i))?;
            if expanded.len() + token.len() > MAX_NAME_LEN {
                return Err(corrupt(
                    NAMES,
                    Some(i),
                    format!(
                        "a name of at most {MAX_NAME_LEN} characters (KSYM_NAME_LEN, type letter included); \
                         its {len}-byte entry at offset {from:#x} expands to more"
                    ),
                ));
            }
            expanded.extend_from_slice(token);
        }
        total += expanded.len();
        if total > max_total {
            return Err(corrupt(
                NAMES,
                Some(i),
                format!(
                    "names that expand to at most {max_total} bytes in all (a real kernel's names take a few MiB); \
                     symbols 0 to {i} take {total}, the last from its {len}-byte entry at offset {from:#x}"
                ),
            ));
        }
        let Some((&kind, name)) = expanded.split_first() else {
            return Err(corrupt(
                NAMES,
                Some(i),
                format!("a type letter and a name; its {len}-byte entry at offset {from:#x} expands to nothing"),
            ));
        };
        out.push((char::from(kind), String::from_utf8_lossy(name).into_owned()));
        pos = to;
    }
    Ok(out)
}

/// The addresses of the `count` symbols from the raw `kallsyms_offsets` or
/// `kallsyms_addresses` array, and the encoding used.
#[allow(clippy::too_many_arguments)]
fn decode_addresses(
    read: ReadFn<'_>,
    layout: &Layout,
    encoding: AddressEncoding,
    opts: &Options,
    endian: Endian,
    array_addr: u64,
    raw: &[u8],
    count: u32,
) -> Result<(AddressEncoding, Vec<u64>), Error> {
    let n = count as usize;
    if encoding == AddressEncoding::Absolute {
        return Ok((encoding, (0..n).map(|i| endian.u64(raw, i * 8)).collect()));
    }
    let offsets: Vec<i32> = (0..n).map(|i| endian.u32(raw, i * 4) as i32).collect();
    if encoding == AddressEncoding::PlaceRelative {
        let addrs = (0u64..)
            .zip(&offsets)
            .map(|(i, &off)| array_addr.wrapping_add(i * 4).wrapping_add(i64::from(off) as u64))
            .collect();
        return Ok((encoding, addrs));
    }
    let base_addr = layout.require(RELATIVE_BASE)?;
    let base = endian.u64(&read_exact(read, RELATIVE_BASE, base_addr, 8)?, 0);
    let encoding = match opts.address_encoding {
        Some(e) => e,
        None if offsets.iter().any(|&o| o < 0) => AddressEncoding::AbsolutePercpu,
        None => AddressEncoding::BaseRelative,
    };
    let addrs = offsets
        .iter()
        .map(|&off| match encoding {
            AddressEncoding::AbsolutePercpu if off >= 0 => off as u64,
            AddressEncoding::AbsolutePercpu => base.wrapping_sub(1).wrapping_sub(i64::from(off) as u64),
            _ => base.wrapping_add(u64::from(off as u32)),
        })
        .collect();
    Ok((encoding, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the tables were read: encoding, long names, big-endian.
    fn tables(k: &Kallsyms) -> (AddressEncoding, bool, bool) {
        match k.origin() {
            Origin::Tables { encoding, long_names, big_endian } => (*encoding, *long_names, *big_endian),
            other => panic!("not decoded tables: {other}"),
        }
    }
    use crate::vmcoreinfo::Source;
    use proptest::prelude::*;

    /// Where the hand-built tables go, and the symbols' home.
    const TABLES: u64 = 0xffff_ffff_8200_0000;
    const TEXT: u64 = 0xffff_ffff_8100_0000;

    /// Multi-character tokens for byte values below 0x20 (the rest stand for themselves,
    /// printable ASCII, or are empty).
    const MULTI: [(u8, &str); 4] = [(0x01, "do_"), (0x02, "_init"), (0x03, "Tsys_"), (0x04, "percpu")];

    fn token_of(b: u8) -> Vec<u8> {
        if let Some((_, t)) = MULTI.iter().find(|(c, _)| *c == b) {
            t.as_bytes().to_vec()
        } else if (0x20..0x7f).contains(&b) {
            vec![b]
        } else {
            Vec::new()
        }
    }

    /// Greedy compression with the tokens above.
    fn compress(full: &str) -> Vec<u8> {
        let s = full.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if let Some((c, t)) = MULTI.iter().find(|(_, t)| s[i..].starts_with(t.as_bytes())) {
                out.push(*c);
                i += t.len();
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    #[derive(Clone)]
    struct Spec {
        /// (address, type letter + name), in address order.
        syms: Vec<(u64, String)>,
        encoding: AddressEncoding,
        long: bool,
        big: bool,
        release: &'static str,
    }

    struct Built {
        image: Vec<u8>,
        vi: String,
        at: Vec<(&'static str, u64)>,
    }

    impl Built {
        fn addr(&self, t: &str) -> u64 {
            self.at.iter().find(|(n, _)| *n == t).unwrap().1
        }
        fn poke(&mut self, addr: u64, bytes: &[u8]) {
            let at = (addr - TABLES) as usize;
            self.image[at..at + bytes.len()].copy_from_slice(bytes);
        }
        fn vmcoreinfo(&self) -> VmcoreInfo {
            VmcoreInfo::parse(self.vi.as_bytes(), Source::ElfNote).unwrap()
        }
        fn decode_with(&self, opts: &Options) -> Result<Kallsyms, Error> {
            let image = &self.image;
            let read = |addr: u64, buf: &mut [u8]| -> Result<(), String> {
                let off = addr.checked_sub(TABLES).ok_or("below the image")? as usize;
                let src = image.get(off..off + buf.len()).ok_or_else(|| format!("{addr:#x}: not mapped"))?;
                buf.copy_from_slice(src);
                Ok(())
            };
            Kallsyms::from_vmcoreinfo_with(&self.vmcoreinfo(), &read, opts)
        }
        fn decode(&self) -> Result<Kallsyms, Error> {
            self.decode_with(&Options::default())
        }
    }

    fn align8(v: &mut Vec<u8>) {
        while v.len() % 8 != 0 {
            v.push(0);
        }
    }

    fn build(spec: &Spec) -> Built {
        let put16 = |v: &mut Vec<u8>, x: u16| v.extend(if spec.big { x.to_be_bytes() } else { x.to_le_bytes() });
        let put32 = |v: &mut Vec<u8>, x: u32| v.extend(if spec.big { x.to_be_bytes() } else { x.to_le_bytes() });
        let put64 = |v: &mut Vec<u8>, x: u64| v.extend(if spec.big { x.to_be_bytes() } else { x.to_le_bytes() });
        let mut img = Vec::new();
        let mut at = Vec::new();
        // 6.2+ order: num_syms, names, (markers), token table, token index, offsets, base.
        at.push((NUM_SYMS, TABLES + img.len() as u64));
        put32(&mut img, spec.syms.len() as u32);
        align8(&mut img);
        at.push((NAMES, TABLES + img.len() as u64));
        for (_, name) in &spec.syms {
            let c = compress(name);
            if c.len() > 0x7f && spec.long {
                img.push(0x80 | (c.len() & 0x7f) as u8);
                img.push((c.len() >> 7) as u8);
            } else {
                img.push(c.len() as u8);
            }
            img.extend(c);
        }
        align8(&mut img);
        img.extend([0u8; 16]); // stands for kallsyms_markers
        at.push((TOKEN_TABLE, TABLES + img.len() as u64));
        let mut index = Vec::new();
        let start = img.len();
        for b in 0..=255u8 {
            index.push((img.len() - start) as u16);
            img.extend(token_of(b));
            img.push(0);
        }
        align8(&mut img);
        at.push((TOKEN_INDEX, TABLES + img.len() as u64));
        for i in index {
            put16(&mut img, i);
        }
        align8(&mut img);
        let percpu = |a: u64| a < 0x10_0000;
        match spec.encoding {
            AddressEncoding::Absolute => {
                at.push((ADDRESSES, TABLES + img.len() as u64));
                for (a, _) in &spec.syms {
                    put64(&mut img, *a);
                }
            }
            AddressEncoding::PlaceRelative => {
                let table = TABLES + img.len() as u64;
                at.push((OFFSETS, table));
                for (i, (a, _)) in spec.syms.iter().enumerate() {
                    put32(&mut img, a.wrapping_sub(table + 4 * i as u64) as i64 as i32 as u32);
                }
            }
            AddressEncoding::BaseRelative | AddressEncoding::AbsolutePercpu => {
                let absolute = spec.encoding == AddressEncoding::AbsolutePercpu;
                let base = spec.syms.iter().map(|s| s.0).filter(|&a| !(absolute && percpu(a))).min().unwrap();
                at.push((OFFSETS, TABLES + img.len() as u64));
                for (a, _) in &spec.syms {
                    let off = if absolute && percpu(*a) {
                        *a as u32
                    } else if absolute {
                        (base as i64 - *a as i64 - 1) as i32 as u32
                    } else {
                        (*a - base) as u32
                    };
                    put32(&mut img, off);
                }
                align8(&mut img);
                at.push((RELATIVE_BASE, TABLES + img.len() as u64));
                put64(&mut img, base);
            }
        }
        align8(&mut img);
        let mut vi = format!("OSRELEASE={}\nPAGESIZE=4096\n", spec.release);
        for (t, a) in &at {
            vi.push_str(&format!("SYMBOL({t})={a:x}\n"));
        }
        Built { image: img, vi, at }
    }

    fn long_name() -> String {
        // 200 characters that compress to 200 bytes: needs a two-byte length from 6.1.
        format!("t{}", "x".repeat(199))
    }

    fn syms(base: u64) -> Vec<(u64, String)> {
        vec![
            (base, "T_text".into()),
            (base, "Tstartup_64".into()),
            (base + 0x40, "Tdo_one_initcall".into()),
            (base + 0x40, "tdo_one_initcall".into()),
            (base + 0x100, "Tsys_read".into()),
            (base + 0x180, "t__x64_sys_read_init".into()),
            (base + 0x20_0000, "Dbig_array".into()),
            (base + 0x20_0000 + 0x30000, "d_percpu_after".into()),
            (base + 0x40_0000, "B_end".into()),
        ]
    }

    fn spec(encoding: AddressEncoding) -> Spec {
        Spec { syms: syms(TEXT), encoding, long: true, big: false, release: "6.12.117+deb12-amd64" }
    }

    fn lines(k: &Kallsyms) -> Vec<String> {
        k.symbols().iter().map(|s| format!("{:016x} {}{}", s.address, s.kind, s.name)).collect()
    }

    fn expected_lines(spec: &Spec) -> Vec<String> {
        let mut v: Vec<(u64, String)> = spec.syms.clone();
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1[1..].cmp(&b.1[1..])));
        v.iter().map(|(a, n)| format!("{a:016x} {n}")).collect()
    }

    #[test]
    fn base_relative_with_long_names() {
        let mut s = spec(AddressEncoding::BaseRelative);
        s.syms.insert(6, (TEXT + 0x200, long_name()));
        let k = build(&s).decode().unwrap();
        assert_eq!(tables(&k), (AddressEncoding::BaseRelative, true, false));
        assert_eq!(lines(&k), expected_lines(&s));
        assert_eq!(k.len(), s.syms.len());
        assert!(!k.is_empty());
        assert_eq!(k.lookup("sys_read"), Some(TEXT + 0x100));
        assert_eq!(k.lookup(&long_name()[1..]), Some(TEXT + 0x200));
        assert_eq!(k.lookup("nope"), None);
        // Two symbols called do_one_initcall at one address: the first one wins.
        assert_eq!(k.lookup("do_one_initcall"), Some(TEXT + 0x40));
        assert_eq!(k.symbols()[2].kind, 'T');
        assert_eq!(k.symbols()[3].kind, 't');
    }

    #[test]
    fn addr2sym_prefers_the_kernel_order_and_caps_sizes() {
        let k = build(&spec(AddressEncoding::BaseRelative)).decode().unwrap();
        // _text is listed before startup_64 by the kernel, and sorts first anyway.
        let (s, off, size) = k.addr2sym(TEXT + 0x10).unwrap();
        assert_eq!((s.name.as_str(), off, size), ("_text", 0x10, 0x40));
        let (s, off, size) = k.addr2sym(TEXT + 0x17f).unwrap();
        assert_eq!((s.name.as_str(), off, size), ("sys_read", 0x7f, 0x80));
        // Far from anything: the cap.
        let (s, off, size) = k.addr2sym(TEXT + 0x180 + 0xffff).unwrap();
        assert_eq!((s.name.as_str(), off, size), ("__x64_sys_read_init", 0xffff, MAX_SYMBOL_SIZE));
        assert!(k.addr2sym(TEXT + 0x180 + MAX_SYMBOL_SIZE).is_none());
        assert!(k.addr2sym(TEXT - 1).is_none());
        // The last symbol: only its own address.
        let (s, off, size) = k.addr2sym(TEXT + 0x40_0000).unwrap();
        assert_eq!((s.name.as_str(), off, size), ("_end", 0, 0));
        assert!(k.addr2sym(TEXT + 0x40_0001).is_none());
        assert!(k.addr2sym(u64::MAX).is_none());
    }

    #[test]
    fn addr2sym_aliases_follow_the_kernel_table_not_the_name() {
        let mut s = spec(AddressEncoding::BaseRelative);
        s.syms[0] = (TEXT, "Tzzz_first_in_table".into());
        let k = build(&s).decode().unwrap();
        assert_eq!(k.symbols()[0].name, "startup_64", "symbols() sorts by name");
        assert_eq!(k.addr2sym(TEXT).unwrap().0.name, "zzz_first_in_table");
    }

    #[test]
    fn absolute_percpu_offsets() {
        let mut s = spec(AddressEncoding::AbsolutePercpu);
        s.syms.splice(0..0, [(0, "D__per_cpu_start".into()), (0x1000, "Dpercpu_thing".into())]);
        let k = build(&s).decode().unwrap();
        assert_eq!(tables(&k).0, AddressEncoding::AbsolutePercpu);
        assert_eq!(lines(&k), expected_lines(&s));
        assert_eq!(k.lookup("percpu_thing"), Some(0x1000));
        assert_eq!(k.lookup("_text"), Some(TEXT));
        // Read as plain base-relative, the addresses go down: refused.
        let e = build(&s)
            .decode_with(&Options { address_encoding: Some(AddressEncoding::BaseRelative), ..Options::default() })
            .unwrap_err();
        assert!(e.to_string().contains("ascending"), "{e}");
        assert!(e.to_string().contains(OFFSETS), "{e}");
    }

    #[test]
    fn absolute_addresses_with_one_byte_lengths() {
        let mut s = spec(AddressEncoding::Absolute);
        s.long = false;
        s.release = "6.0.19";
        s.syms.insert(6, (TEXT + 0x200, long_name()));
        let b = build(&s);
        let k = b.decode().unwrap();
        assert_eq!(tables(&k).0, AddressEncoding::Absolute);
        assert!(!tables(&k).1);
        assert_eq!(lines(&k), expected_lines(&s));
        // Read as big lengths, the 200-byte name is taken for a two-byte length and
        // everything after it goes astray: an error, not garbage.
        assert!(b.decode_with(&Options { long_names: Some(true), ..Options::default() }).is_err());
    }

    #[test]
    fn long_names_follow_the_release_unless_told() {
        let mut s = spec(AddressEncoding::BaseRelative);
        s.syms.insert(6, (TEXT + 0x200, long_name()));
        s.release = "6.0.0";
        let b = build(&s);
        assert!(b.decode().is_err(), "6.0 reads one-byte lengths");
        let k = b.decode_with(&Options { long_names: Some(true), ..Options::default() }).unwrap();
        assert_eq!(lines(&k), expected_lines(&s));
        assert!(long_names_for(Some("6.1.0-56-amd64")));
        assert!(long_names_for(Some("6.12.117+deb12-arm64")));
        assert!(long_names_for(Some("7.0")));
        assert!(!long_names_for(Some("6.0.19-x")));
        assert!(!long_names_for(Some("5.15.0")));
        assert!(long_names_for(Some("weird")));
        assert!(long_names_for(None));
    }

    #[test]
    fn place_relative_offsets() {
        let s = spec(AddressEncoding::PlaceRelative);
        let k = build(&s).decode().unwrap();
        assert_eq!(tables(&k).0, AddressEncoding::PlaceRelative);
        assert_eq!(lines(&k), expected_lines(&s));
    }

    #[test]
    fn big_endian_tables_are_detected() {
        for enc in [AddressEncoding::BaseRelative, AddressEncoding::Absolute, AddressEncoding::PlaceRelative] {
            let mut s = spec(enc);
            s.big = true;
            let k = build(&s).decode().unwrap();
            assert!(tables(&k).2);
            assert_eq!(lines(&k), expected_lines(&s));
        }
    }

    fn err_of(b: &Built) -> String {
        b.decode().unwrap_err().to_string()
    }

    #[test]
    fn token_index_out_of_range() {
        let mut b = build(&spec(AddressEncoding::BaseRelative));
        // Entry 0x7a ('z') points far past the token table; the index stays increasing.
        let index = b.addr(TOKEN_INDEX);
        for (i, e) in (0x7au16..=0xff).enumerate() {
            b.poke(index + 2 * e as u64, &(0x2000u16 + i as u16).to_le_bytes());
        }
        assert!(b.decode().is_ok(), "no name uses 'z' or above");
        let mut s = spec(AddressEncoding::BaseRelative);
        s.syms[4].1 = "Tzap".into();
        let mut b = build(&s);
        let index = b.addr(TOKEN_INDEX);
        for (i, e) in (0x7au16..=0xff).enumerate() {
            b.poke(index + 2 * e as u64, &(0x2000u16 + i as u16).to_le_bytes());
        }
        let e = err_of(&b);
        assert!(e.starts_with("kallsyms_token_index, symbol 4: entry 0x7a"), "{e}");
        assert!(e.contains("offset 0x2000"), "{e}");
        // Not increasing in either order.
        b.poke(index + 2, &[0, 0]);
        let e = err_of(&b);
        assert!(e.starts_with("kallsyms_token_index: 256 token offsets"), "{e}");
    }

    #[test]
    fn names_running_past_the_table() {
        let mut b = build(&spec(AddressEncoding::BaseRelative));
        let names = b.addr(NAMES);
        let room = b.addr(TOKEN_TABLE) - names;
        // The last name claims 0x7f bytes: past the token table's start.
        let last_len_at = {
            let mut pos = names;
            for _ in 0..8 {
                let len = b.image[(pos - TABLES) as usize];
                pos += 1 + len as u64;
            }
            pos
        };
        b.poke(last_len_at, &[0x7f]);
        let e = err_of(&b);
        assert!(e.starts_with("kallsyms_names, symbol 8: a name of 127 bytes at offset"), "{e}");
        assert!(e.contains(&format!("ends after {room:#x} bytes (kallsyms_token_table)")), "{e}");
        // A zero length.
        b.poke(last_len_at, &[0]);
        assert!(err_of(&b).contains("its length is 0"));
        // A name of only empty tokens.
        b.poke(last_len_at, &[2, 0x10, 0x11]);
        assert!(err_of(&b).contains("expands to nothing"), "{}", err_of(&b));
    }

    #[test]
    fn names_expanding_beyond_any_kernel_name() {
        let mut s = spec(AddressEncoding::BaseRelative);
        // The longest name the kernel stores: its letter and 511 characters.
        let longest = "x".repeat(511);
        s.syms[4].1 = format!("T{longest}");
        let k = build(&s).decode().unwrap();
        assert_eq!(lines(&k), expected_lines(&s));
        assert_eq!(k.lookup(&longest), Some(TEXT + 0x100));
        s.syms[4].1 = format!("T{longest}x");
        let e = err_of(&build(&s));
        assert!(
            e.starts_with(
                "kallsyms_names, symbol 4: a name of at most 512 characters (KSYM_NAME_LEN, type letter included)"
            ),
            "{e}"
        );
        s.syms[4].1 = format!("T{}", "do_".repeat(MAX_NAME_LEN / 3 + 1));
        assert!(err_of(&build(&s)).starts_with("kallsyms_names, symbol 4: a name of at most 512 characters"));
    }

    /// Decodes `count` raw `kallsyms_names` entries whose byte 0x01 stands for `token`,
    /// printable bytes for themselves, and others for nothing.
    fn decode_raw(names: &[u8], count: u32, token: &[u8], max_total: usize) -> Result<Vec<(char, String)>, Error> {
        const NAMES_AT: u64 = 0;
        const TABLE_AT: u64 = 0x1_0000;
        const INDEX_AT: u64 = 0x2_0000;
        let mut image = vec![0u8; INDEX_AT as usize + 512];
        image[..names.len()].copy_from_slice(names);
        let mut table = Vec::new();
        for b in 0..=255u8 {
            let at = INDEX_AT as usize + 2 * usize::from(b);
            image[at..at + 2].copy_from_slice(&(table.len() as u16).to_le_bytes());
            match b {
                0x01 => table.extend(token),
                0x20..0x7f => table.push(b),
                _ => {}
            }
            table.push(0);
        }
        image[TABLE_AT as usize..][..table.len()].copy_from_slice(&table);
        let read = |addr: u64, buf: &mut [u8]| -> Result<(), String> {
            let src =
                image.get(addr as usize..addr as usize + buf.len()).ok_or_else(|| format!("{addr:#x}: not mapped"))?;
            buf.copy_from_slice(src);
            Ok(())
        };
        let layout = Layout { tables: vec![(NAMES, NAMES_AT), (TOKEN_TABLE, TABLE_AT), (TOKEN_INDEX, INDEX_AT)] };
        let tokens = Tokens::load(&read, &layout, TABLE_AT, &image[INDEX_AT as usize..], Endian { big: false })?;
        decode_names(&read, &layout, NAMES_AT, count, true, &tokens, max_total)
    }

    #[test]
    fn two_byte_entries_expanding_past_ksym_name_len() {
        // Length 1, then byte 0x01: the entry is two bytes whatever the token holds.
        let names = [&[1u8, 0x01][..], &[2, b'T', b'x'], &[1, 0x01]].concat();
        let longest = format!("T{}", "a".repeat(511));
        let got = decode_raw(&names, 3, longest.as_bytes(), MAX_NAMES_EXPANDED).unwrap();
        assert_eq!(got, [('T', "a".repeat(511)), ('T', "x".into()), ('T', "a".repeat(511))]);
        let e = decode_raw(&names, 3, format!("{longest}a").as_bytes(), MAX_NAMES_EXPANDED).unwrap_err().to_string();
        assert_eq!(
            e,
            "kallsyms_names, symbol 0: a name of at most 512 characters (KSYM_NAME_LEN, type letter included); \
             its 1-byte entry at offset 0x1 expands to more"
        );
    }

    #[test]
    fn all_names_together_expand_within_a_budget() {
        // 1000 two-byte entries of 100 characters each: 100,000 bytes in all.
        let names = [1u8, 0x01].repeat(1000);
        let token = format!("t{}", "b".repeat(99));
        let got = decode_raw(&names, 1000, token.as_bytes(), 100_000).unwrap();
        assert_eq!(got.len(), 1000);
        assert!(got.iter().all(|(k, n)| *k == 't' && *n == token[1..]));
        // Symbol 500 brings the total to 50,100 bytes.
        let e = decode_raw(&names, 1000, token.as_bytes(), 50_000).unwrap_err().to_string();
        assert_eq!(
            e,
            "kallsyms_names, symbol 500: names that expand to at most 50000 bytes in all (a real kernel's names \
             take a few MiB); symbols 0 to 500 take 50100, the last from its 1-byte entry at offset 0x3e9"
        );
    }

    #[test]
    fn huge_or_zero_symbol_counts() {
        let mut b = build(&spec(AddressEncoding::BaseRelative));
        let at = b.addr(NUM_SYMS);
        for n in [0u32, MAX_SYMBOLS + 1, u32::MAX] {
            b.poke(at, &n.to_le_bytes());
            let e = err_of(&b);
            assert!(e.starts_with(&format!("kallsyms_num_syms: between 1 and 10000000 symbols, found {n}")), "{e}");
        }
        // Plausible, but more than the offsets table holds before the next table.
        b.poke(at, &5_000_000u32.to_le_bytes());
        let e = err_of(&b);
        assert!(e.contains("5000000 symbols need 0x1312d00 bytes of kallsyms_offsets"), "{e}");
        assert!(e.contains("kallsyms_relative_base starts 0x28 bytes after it"), "{e}");
        // More than the names table holds (the offsets table is the last, unbounded).
        let mut s = spec(AddressEncoding::PlaceRelative);
        s.syms.truncate(3);
        let mut b = build(&s);
        b.poke(at, &9u32.to_le_bytes());
        let e = err_of(&b);
        assert!(e.starts_with("kallsyms_names, symbol 3: a name of at least one byte"), "{e}");
    }

    #[test]
    fn unreadable_and_missing_tables() {
        let b = build(&spec(AddressEncoding::BaseRelative));
        let vi = b.vmcoreinfo();
        let read = |_: u64, _: &mut [u8]| -> Result<(), String> { Err("excluded page".into()) };
        let e = Kallsyms::from_vmcoreinfo(&vi, &read).unwrap_err();
        assert!(matches!(e, Error::Read { table: TOKEN_INDEX, .. }), "{e}");
        assert!(e.to_string().contains("excluded page"), "{e}");

        let text = b.vi.lines().filter(|l| !l.contains(NAMES)).collect::<Vec<_>>().join("\n");
        let vi = VmcoreInfo::parse(text.as_bytes(), Source::ElfNote).unwrap();
        let e = Kallsyms::from_vmcoreinfo(&vi, &read).unwrap_err();
        assert!(matches!(e, Error::Missing(NAMES)));
        assert!(e.to_string().contains("SYMBOL(kallsyms_names)"));

        let text = b.vi.lines().filter(|l| !l.contains(OFFSETS)).collect::<Vec<_>>().join("\n");
        let e = build_err_with_text(&b, &text);
        assert!(e.contains("kallsyms_offsets or kallsyms_addresses"), "{e}");
    }

    fn build_err_with_text(b: &Built, text: &str) -> String {
        let mut b2 = Built { image: b.image.clone(), vi: text.into(), at: b.at.clone() };
        b2.vi.push('\n');
        err_of(&b2)
    }

    #[test]
    fn a_names_table_ending_at_unreadable_memory_is_read_in_short_chunks() {
        // The names table is the last thing mapped and no other table bounds it.
        let s = spec(AddressEncoding::BaseRelative);
        let b = build(&s);
        let names = b.addr(NAMES);
        let names_end = b.addr(TOKEN_TABLE);
        let mut vi = String::new();
        for l in b.vi.lines() {
            vi.push_str(l);
            vi.push('\n');
        }
        // Move the names to the end of a fake page-aligned region, everything else before.
        let region = 0xffff_ffff_9000_0000u64;
        let names_bytes = b.image[(names - TABLES) as usize..(names_end - TABLES) as usize].to_vec();
        let new_names = region + 0x3000 - names_bytes.len() as u64;
        let vi = vi.replace(&format!("SYMBOL({NAMES})={names:x}"), &format!("SYMBOL({NAMES})={new_names:x}"));
        let vi = VmcoreInfo::parse(vi.as_bytes(), Source::ElfNote).unwrap();
        let image = &b.image;
        let read = |addr: u64, buf: &mut [u8]| -> Result<(), String> {
            if addr >= region {
                let end = addr + buf.len() as u64;
                if end > region + 0x3000 {
                    return Err("hole".into());
                }
                let off = (addr - new_names) as usize;
                buf.copy_from_slice(&names_bytes[off..off + buf.len()]);
                return Ok(());
            }
            let off = (addr - TABLES) as usize;
            buf.copy_from_slice(image.get(off..off + buf.len()).ok_or("not mapped")?);
            Ok(())
        };
        let k = Kallsyms::from_vmcoreinfo(&vi, &read).unwrap();
        assert_eq!(lines(&k), expected_lines(&s));
    }

    #[test]
    fn debug_is_a_summary() {
        let k = build(&spec(AddressEncoding::BaseRelative)).decode().unwrap();
        assert_eq!(
            format!("{k:?}"),
            "Kallsyms { 9 symbols from the dump's kallsyms (base-relative, two-byte name lengths, little-endian) }"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn garbage_tables_never_panic(
            enc in 0usize..4,
            pokes in proptest::collection::vec((0usize..4096, any::<u8>()), 0..64),
            long in any::<Option<bool>>(),
            big in any::<Option<bool>>(),
        ) {
            let encoding = [
                AddressEncoding::Absolute,
                AddressEncoding::BaseRelative,
                AddressEncoding::AbsolutePercpu,
                AddressEncoding::PlaceRelative,
            ][enc];
            let mut s = spec(encoding);
            s.syms.insert(0, (0x10, "Dpercpu_x".into()));
            s.syms.insert(7, (TEXT + 0x200, long_name()));
            let mut b = build(&s);
            let len = b.image.len();
            for (at, v) in pokes {
                b.image[at % len] = v;
            }
            let opts = Options { long_names: long, big_endian: big, ..Options::default() };
            if let Ok(k) = b.decode_with(&opts) {
                prop_assert!(k.symbols().windows(2).all(|w| w[0].address <= w[1].address));
                for sym in k.symbols() {
                    let _ = k.addr2sym(sym.address);
                    prop_assert!(k.lookup(&sym.name).is_some());
                }
            }
        }
    }
}
