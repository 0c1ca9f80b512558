//! Decoding RV64GC instructions (32-bit and compressed) into [`Op`], the
//! pre-decoded form the instruction cache stores. Compressed instructions
//! expand to the same kinds as their 32-bit equivalents, with `len = 2`.

pub use super::exec::bitmanip::Bit;

/// Integer ALU operations (register or immediate form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alu {
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
}

/// Atomic memory operations of the A extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amo {
    Swap,
    Add,
    Xor,
    And,
    Or,
    Min,
    Max,
    Minu,
    Maxu,
}

/// Floating-point operations of F, D, Zfh and Zfa (precision is carried by
/// the kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fp {
    Madd,
    Msub,
    Nmsub,
    Nmadd,
    Add,
    Sub,
    Mul,
    Div,
    Sqrt,
    Sgnj,
    Sgnjn,
    Sgnjx,
    Min,
    Max,
    /// To a signed 32-bit integer.
    CvtW,
    CvtWu,
    CvtL,
    CvtLu,
    /// From a signed 32-bit integer.
    FromW,
    FromWu,
    FromL,
    FromLu,
    /// Between precisions (to the kind's precision, from the format in `rs2`).
    CvtFp,
    MvToX,
    MvFromX,
    Eq,
    Lt,
    Le,
    Class,
    /// Zfa `fli`: load constant number `rs1` of the table.
    Fli,
    /// Zfa `fminm`/`fmaxm`: min/max that propagate NaNs.
    Minm,
    Maxm,
    /// Zfa `fround` (no inexact flag) and `froundnx`: round to an integral value.
    Round,
    RoundNx,
    /// Zfa `fcvtmod.w.d`: double to 32-bit integer, rounding toward zero, modulo 2^32.
    CvtModW,
    /// Zfa quiet compares `fleq`/`fltq` (invalid only for signaling NaNs).
    Leq,
    Ltq,
}

/// Floating-point formats (the `fmt` field of the encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    /// Single precision (F).
    S,
    /// Double precision (D).
    D,
    /// Half precision (Zfh, Zfhmin).
    H,
}

impl Fmt {
    /// From the 2-bit `fmt` field (Q, 3, is not implemented).
    fn from_field(v: u32) -> Option<Fmt> {
        match v {
            0 => Some(Fmt::S),
            1 => Some(Fmt::D),
            2 => Some(Fmt::H),
            _ => None,
        }
    }

    /// log2 of the width in bytes (a load/store `size`).
    pub fn size(self) -> u8 {
        match self {
            Fmt::H => 1,
            Fmt::S => 2,
            Fmt::D => 3,
        }
    }
}

/// Branch conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq,
    Ne,
    Lt,
    Ge,
    Ltu,
    Geu,
}

/// CSR access forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrOp {
    Rw,
    Rs,
    Rc,
    Rwi,
    Rsi,
    Rci,
}

/// What an instruction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not decoded yet (instruction-cache sentinel).
    Undecoded,
    /// Illegal or unsupported; `imm` holds the raw bits for `mtval`.
    Illegal,
    Lui,
    Auipc,
    Jal,
    Jalr,
    Branch(Cond),
    /// Load of `1 << size` bytes, sign-extended unless `unsigned`.
    Load {
        size: u8,
        unsigned: bool,
    },
    Store {
        size: u8,
    },
    AluImm(Alu),
    AluReg(Alu),
    AluImmW(Alu),
    AluRegW(Alu),
    Fence,
    FenceI,
    Ecall,
    Ebreak,
    Mret,
    Sret,
    Wfi,
    SfenceVma,
    Csr(CsrOp),
    /// Load-reserved of `1 << size` bytes (2 = word, 3 = double).
    Lr {
        size: u8,
    },
    Sc {
        size: u8,
    },
    AmoOp {
        op: Amo,
        size: u8,
    },
    /// FP load of one format.
    FLoad {
        fmt: Fmt,
    },
    FStore {
        fmt: Fmt,
    },
    /// FP arithmetic in one format.
    FOp {
        op: Fp,
        fmt: Fmt,
    },
    /// Bit manipulation (Zb*) or Zicond, second operand `x[rs2]`.
    BitReg(Bit),
    /// Bit manipulation with the immediate (shift amount) as second operand.
    BitImm(Bit),
    /// Zicbom/Zicboz cache-block operation on the block at `x[rs1]`.
    CacheBlock(Cbo),
    /// Svinval `sinval.vma` (like `sfence.vma`).
    SinvalVma,
    /// Svinval `sfence.w.inval` / `sfence.inval.ir` (orderings: no-ops here).
    SfenceInval,
}

/// Cache-block operations of Zicbom and Zicboz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cbo {
    Inval,
    Clean,
    Flush,
    Zero,
}

/// One pre-decoded instruction (16 bytes, aligned so a copy is two loads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct Op {
    /// What it does.
    pub kind: Kind,
    /// Destination register.
    pub rd: u8,
    /// First source register.
    pub rs1: u8,
    /// Second source register.
    pub rs2: u8,
    /// Third source register (fused multiply-add).
    pub rs3: u8,
    /// Rounding mode field (FP) or the `aq/rl` bits (atomics).
    pub rm: u8,
    /// Length in bytes: 2 (compressed) or 4.
    pub len: u8,
    /// Immediate (CSR number for CSR ops, raw bits for illegal instructions).
    pub imm: i32,
}

impl Op {
    /// The instruction-cache sentinel.
    pub const UNDECODED: Op = Op {
        kind: Kind::Undecoded,
        rd: 0,
        rs1: 0,
        rs2: 0,
        rs3: 0,
        rm: 0,
        len: 0,
        imm: 0,
    };

    pub(super) fn new(kind: Kind, rd: u32, rs1: u32, rs2: u32, imm: i32) -> Self {
        Op {
            kind,
            rd: rd as u8,
            rs1: rs1 as u8,
            rs2: rs2 as u8,
            rs3: 0,
            rm: 0,
            len: 4,
            imm,
        }
    }

    fn illegal(bits: u32, len: u8) -> Self {
        Op {
            len,
            ..Op::new(Kind::Illegal, 0, 0, 0, bits as i32)
        }
    }
}

/// Whether the low half-word starts a compressed (16-bit) instruction.
pub fn is_compressed(low: u16) -> bool {
    low & 3 != 3
}

fn bits(v: u32, hi: u32, lo: u32) -> u32 {
    (v >> lo) & ((1 << (hi - lo + 1)) - 1)
}

/// Sign-extends the low `width` bits of `v`.
fn sext(v: u32, width: u32) -> i32 {
    let shift = 32 - width;
    ((v << shift) as i32) >> shift
}

/// Decodes a 32-bit instruction.
pub fn decode32(i: u32) -> Op {
    let op = decode_base(i);
    if op.kind == Kind::Illegal {
        // Extensions outside RV64GC: decoded once, so the cost stays here.
        return super::exec::bitmanip::decode(i).unwrap_or(op);
    }
    op
}

fn decode_base(i: u32) -> Op {
    let rd = bits(i, 11, 7);
    let rs1 = bits(i, 19, 15);
    let rs2 = bits(i, 24, 20);
    let f3 = bits(i, 14, 12);
    let f7 = bits(i, 31, 25);
    let imm_i = (i as i32) >> 20;
    let imm_s = ((i as i32) >> 25 << 5) | bits(i, 11, 7) as i32;
    let imm_b = sext(
        (bits(i, 31, 31) << 12)
            | (bits(i, 7, 7) << 11)
            | (bits(i, 30, 25) << 5)
            | (bits(i, 11, 8) << 1),
        13,
    );
    let imm_u = (i & 0xffff_f000) as i32;
    let imm_j = sext(
        (bits(i, 31, 31) << 20)
            | (bits(i, 19, 12) << 12)
            | (bits(i, 20, 20) << 11)
            | (bits(i, 30, 21) << 1),
        21,
    );
    let ill = Op::illegal(i, 4);
    let op = |k| Op::new(k, rd, rs1, rs2, imm_i);
    match i & 0x7f {
        0x37 => Op::new(Kind::Lui, rd, 0, 0, imm_u),
        0x17 => Op::new(Kind::Auipc, rd, 0, 0, imm_u),
        0x6f => Op::new(Kind::Jal, rd, 0, 0, imm_j),
        0x67 if f3 == 0 => op(Kind::Jalr),
        0x63 => {
            let c = match f3 {
                0 => Cond::Eq,
                1 => Cond::Ne,
                4 => Cond::Lt,
                5 => Cond::Ge,
                6 => Cond::Ltu,
                7 => Cond::Geu,
                _ => return ill,
            };
            Op::new(Kind::Branch(c), 0, rs1, rs2, imm_b)
        }
        0x03 => match f3 {
            0..=3 => op(Kind::Load {
                size: f3 as u8,
                unsigned: false,
            }),
            4..=6 => op(Kind::Load {
                size: (f3 - 4) as u8,
                unsigned: true,
            }),
            _ => ill,
        },
        0x23 if f3 <= 3 => Op::new(Kind::Store { size: f3 as u8 }, 0, rs1, rs2, imm_s),
        0x13 => {
            let alu = match f3 {
                0 => Alu::Add,
                2 => Alu::Slt,
                3 => Alu::Sltu,
                4 => Alu::Xor,
                6 => Alu::Or,
                7 => Alu::And,
                1 if i >> 26 == 0 => {
                    return Op::new(Kind::AluImm(Alu::Sll), rd, rs1, 0, (i >> 20 & 63) as i32)
                }
                5 if i >> 26 == 0 => {
                    return Op::new(Kind::AluImm(Alu::Srl), rd, rs1, 0, (i >> 20 & 63) as i32)
                }
                5 if i >> 26 == 0x10 => {
                    return Op::new(Kind::AluImm(Alu::Sra), rd, rs1, 0, (i >> 20 & 63) as i32)
                }
                _ => return ill,
            };
            op(Kind::AluImm(alu))
        }
        0x1b => match (f3, f7) {
            (0, _) => op(Kind::AluImmW(Alu::Add)),
            (1, 0) => Op::new(Kind::AluImmW(Alu::Sll), rd, rs1, 0, rs2 as i32),
            (5, 0) => Op::new(Kind::AluImmW(Alu::Srl), rd, rs1, 0, rs2 as i32),
            (5, 0x20) => Op::new(Kind::AluImmW(Alu::Sra), rd, rs1, 0, rs2 as i32),
            _ => ill,
        },
        0x33 => {
            let alu = match (f7, f3) {
                (0, 0) => Alu::Add,
                (0x20, 0) => Alu::Sub,
                (0, 1) => Alu::Sll,
                (0, 2) => Alu::Slt,
                (0, 3) => Alu::Sltu,
                (0, 4) => Alu::Xor,
                (0, 5) => Alu::Srl,
                (0x20, 5) => Alu::Sra,
                (0, 6) => Alu::Or,
                (0, 7) => Alu::And,
                (1, 0) => Alu::Mul,
                (1, 1) => Alu::Mulh,
                (1, 2) => Alu::Mulhsu,
                (1, 3) => Alu::Mulhu,
                (1, 4) => Alu::Div,
                (1, 5) => Alu::Divu,
                (1, 6) => Alu::Rem,
                (1, 7) => Alu::Remu,
                _ => return ill,
            };
            op(Kind::AluReg(alu))
        }
        0x3b => {
            let alu = match (f7, f3) {
                (0, 0) => Alu::Add,
                (0x20, 0) => Alu::Sub,
                (0, 1) => Alu::Sll,
                (0, 5) => Alu::Srl,
                (0x20, 5) => Alu::Sra,
                (1, 0) => Alu::Mul,
                (1, 4) => Alu::Div,
                (1, 5) => Alu::Divu,
                (1, 6) => Alu::Rem,
                (1, 7) => Alu::Remu,
                _ => return ill,
            };
            op(Kind::AluRegW(alu))
        }
        0x0f => match f3 {
            0 => op(Kind::Fence),
            1 => op(Kind::FenceI),
            2 if rd == 0 => {
                let cbo = match i >> 20 {
                    0 => Cbo::Inval,
                    1 => Cbo::Clean,
                    2 => Cbo::Flush,
                    4 => Cbo::Zero,
                    _ => return ill,
                };
                Op::new(Kind::CacheBlock(cbo), 0, rs1, 0, 0)
            }
            _ => ill,
        },
        0x73 => decode_system(i, rd, rs1, rs2, f3, f7),
        0x2f => decode_amo(i, rd, rs1, rs2, f3),
        0x07 => match mem_fmt(f3) {
            Some(fmt) => op(Kind::FLoad { fmt }),
            None => ill,
        },
        0x27 => match mem_fmt(f3) {
            Some(fmt) => Op::new(Kind::FStore { fmt }, 0, rs1, rs2, imm_s),
            None => ill,
        },
        0x43 | 0x47 | 0x4b | 0x4f => {
            let Some(fmt) = Fmt::from_field(bits(i, 26, 25)) else {
                return ill;
            };
            let fp = match i & 0x7f {
                0x43 => Fp::Madd,
                0x47 => Fp::Msub,
                0x4b => Fp::Nmsub,
                _ => Fp::Nmadd,
            };
            Op {
                rs3: bits(i, 31, 27) as u8,
                rm: f3 as u8,
                ..Op::new(Kind::FOp { op: fp, fmt }, rd, rs1, rs2, 0)
            }
        }
        0x53 => decode_fp(i, rd, rs1, rs2, f3, f7),
        _ => ill,
    }
}

fn decode_system(i: u32, rd: u32, rs1: u32, rs2: u32, f3: u32, f7: u32) -> Op {
    let ill = Op::illegal(i, 4);
    if f3 == 0 {
        if rd != 0 {
            return ill;
        }
        let kind = match (f7, rs2, rs1) {
            (0, 0, 0) => Kind::Ecall,
            (0, 1, 0) => Kind::Ebreak,
            (0x18, 2, 0) => Kind::Mret,
            (0x08, 2, 0) => Kind::Sret,
            (0x08, 5, 0) => Kind::Wfi,
            (0x09, _, _) => Kind::SfenceVma,
            (0x0b, _, _) => Kind::SinvalVma,
            (0x0c, 0 | 1, 0) => Kind::SfenceInval,
            _ => return ill,
        };
        return Op::new(kind, 0, rs1, rs2, 0);
    }
    if f3 == 4 {
        // Zimop: mop.r.N and mop.rr.N write zero to rd.
        return if i & 0xb3c0_707f == 0x81c0_4073 || i & 0xb200_707f == 0x8200_4073 {
            Op::new(Kind::AluImm(Alu::And), rd, 0, 0, 0)
        } else {
            ill
        };
    }
    let csr = match f3 {
        1 => CsrOp::Rw,
        2 => CsrOp::Rs,
        3 => CsrOp::Rc,
        5 => CsrOp::Rwi,
        6 => CsrOp::Rsi,
        7 => CsrOp::Rci,
        _ => return ill,
    };
    Op::new(Kind::Csr(csr), rd, rs1, 0, (i >> 20) as i32)
}

fn decode_amo(i: u32, rd: u32, rs1: u32, rs2: u32, f3: u32) -> Op {
    let ill = Op::illegal(i, 4);
    let size = match f3 {
        2 => 2,
        3 => 3,
        _ => return ill,
    };
    let f5 = i >> 27;
    let kind = match f5 {
        0x02 if rs2 == 0 => Kind::Lr { size },
        0x03 => Kind::Sc { size },
        _ => {
            let op = match f5 {
                0x01 => Amo::Swap,
                0x00 => Amo::Add,
                0x04 => Amo::Xor,
                0x0c => Amo::And,
                0x08 => Amo::Or,
                0x10 => Amo::Min,
                0x14 => Amo::Max,
                0x18 => Amo::Minu,
                0x1c => Amo::Maxu,
                _ => return ill,
            };
            Kind::AmoOp { op, size }
        }
    };
    Op {
        rm: bits(i, 26, 25) as u8,
        ..Op::new(kind, rd, rs1, rs2, 0)
    }
}

/// The format of an FP load/store from its `funct3` (`flh`, `flw`, `fld`).
fn mem_fmt(f3: u32) -> Option<Fmt> {
    match f3 {
        1 => Some(Fmt::H),
        2 => Some(Fmt::S),
        3 => Some(Fmt::D),
        _ => None,
    }
}

fn decode_fp(i: u32, rd: u32, rs1: u32, rs2: u32, f3: u32, f7: u32) -> Op {
    let ill = Op::illegal(i, 4);
    let Some(fmt) = Fmt::from_field(f7 & 3) else {
        return ill; // Q format
    };
    let fp = match (f7 >> 2, f3, rs2) {
        (0x00, _, _) => Fp::Add,
        (0x01, _, _) => Fp::Sub,
        (0x02, _, _) => Fp::Mul,
        (0x03, _, _) => Fp::Div,
        (0x0b, _, 0) => Fp::Sqrt,
        (0x04, 0, _) => Fp::Sgnj,
        (0x04, 1, _) => Fp::Sgnjn,
        (0x04, 2, _) => Fp::Sgnjx,
        (0x05, 0, _) => Fp::Min,
        (0x05, 1, _) => Fp::Max,
        // fcvt between formats: `rs2` is the source format.
        (0x08, _, 0..=2) if Fmt::from_field(rs2) != Some(fmt) => Fp::CvtFp,
        (0x08, _, 4) => Fp::Round,
        (0x08, _, 5) => Fp::RoundNx,
        (0x05, 2, _) => Fp::Minm,
        (0x05, 3, _) => Fp::Maxm,
        (0x18, 1, 8) if fmt == Fmt::D => Fp::CvtModW,
        (0x1e, 0, 1) => Fp::Fli,
        // Zfa's fmvh.x.d and fmvp.d.x exist on RV32 only: illegal here.
        (0x14, 4, _) => Fp::Leq,
        (0x14, 5, _) => Fp::Ltq,
        (0x18, _, 0) => Fp::CvtW,
        (0x18, _, 1) => Fp::CvtWu,
        (0x18, _, 2) => Fp::CvtL,
        (0x18, _, 3) => Fp::CvtLu,
        (0x1a, _, 0) => Fp::FromW,
        (0x1a, _, 1) => Fp::FromWu,
        (0x1a, _, 2) => Fp::FromL,
        (0x1a, _, 3) => Fp::FromLu,
        (0x1c, 0, 0) => Fp::MvToX,
        (0x1c, 1, 0) => Fp::Class,
        (0x1e, 0, 0) => Fp::MvFromX,
        (0x14, 2, _) => Fp::Eq,
        (0x14, 1, _) => Fp::Lt,
        (0x14, 0, _) => Fp::Le,
        _ => return ill,
    };
    Op {
        rm: f3 as u8,
        ..Op::new(Kind::FOp { op: fp, fmt }, rd, rs1, rs2, 0)
    }
}

/// Decodes a 16-bit compressed instruction into its 32-bit equivalent.
pub fn decode16(c: u16) -> Op {
    let c = u32::from(c);
    let ill = Op::illegal(c, 2);
    let f3 = bits(c, 15, 13);
    let rdp = 8 + bits(c, 4, 2); // rd'/rs2'
    let rs1p = 8 + bits(c, 9, 7);
    let rd = bits(c, 11, 7);
    let rs2 = bits(c, 6, 2);
    let imm6 = sext((bits(c, 12, 12) << 5) | bits(c, 6, 2), 6);
    let short = |mut op: Op| {
        op.len = 2;
        op
    };
    let op = match (c & 3, f3) {
        (0, 0) => {
            let imm = (bits(c, 12, 11) << 4)
                | (bits(c, 10, 7) << 6)
                | (bits(c, 6, 6) << 2)
                | (bits(c, 5, 5) << 3);
            if imm == 0 {
                return ill;
            }
            Op::new(Kind::AluImm(Alu::Add), rdp, 2, 0, imm as i32)
        }
        (0, 1 | 3 | 5 | 7) => {
            let imm = (bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6);
            match f3 {
                1 => Op::new(Kind::FLoad { fmt: Fmt::D }, rdp, rs1p, 0, imm as i32),
                3 => Op::new(
                    Kind::Load {
                        size: 3,
                        unsigned: false,
                    },
                    rdp,
                    rs1p,
                    0,
                    imm as i32,
                ),
                5 => Op::new(Kind::FStore { fmt: Fmt::D }, 0, rs1p, rdp, imm as i32),
                _ => Op::new(Kind::Store { size: 3 }, 0, rs1p, rdp, imm as i32),
            }
        }
        (0, 2 | 6) => {
            let imm = (bits(c, 12, 10) << 3) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 6);
            if f3 == 2 {
                Op::new(
                    Kind::Load {
                        size: 2,
                        unsigned: false,
                    },
                    rdp,
                    rs1p,
                    0,
                    imm as i32,
                )
            } else {
                Op::new(Kind::Store { size: 2 }, 0, rs1p, rdp, imm as i32)
            }
        }
        (1, 0) => Op::new(Kind::AluImm(Alu::Add), rd, rd, 0, imm6),
        (1, 1) => {
            if rd == 0 {
                return ill;
            }
            Op::new(Kind::AluImmW(Alu::Add), rd, rd, 0, imm6)
        }
        (1, 2) => Op::new(Kind::AluImm(Alu::Add), rd, 0, 0, imm6),
        (1, 3) => {
            if rd == 2 {
                let imm = sext(
                    (bits(c, 12, 12) << 9)
                        | (bits(c, 6, 6) << 4)
                        | (bits(c, 5, 5) << 6)
                        | (bits(c, 4, 3) << 7)
                        | (bits(c, 2, 2) << 5),
                    10,
                );
                if imm == 0 {
                    return ill;
                }
                Op::new(Kind::AluImm(Alu::Add), 2, 2, 0, imm)
            } else if imm6 != 0 {
                Op::new(Kind::Lui, rd, 0, 0, imm6 << 12)
            } else if rd & 1 == 1 && rd < 16 {
                // Zcmop: c.mop.N (c.lui x1, x3, ..., x15 with a zero immediate) does nothing.
                Op::new(Kind::AluImm(Alu::Add), 0, 0, 0, 0)
            } else {
                return ill;
            }
        }
        (1, 4) => {
            let shamt = ((bits(c, 12, 12) << 5) | rs2) as i32;
            match bits(c, 11, 10) {
                0 => Op::new(Kind::AluImm(Alu::Srl), rs1p, rs1p, 0, shamt),
                1 => Op::new(Kind::AluImm(Alu::Sra), rs1p, rs1p, 0, shamt),
                2 => Op::new(Kind::AluImm(Alu::And), rs1p, rs1p, 0, imm6),
                _ => {
                    let (kind, w) = match (bits(c, 12, 12), bits(c, 6, 5)) {
                        (0, 0) => (Alu::Sub, false),
                        (0, 1) => (Alu::Xor, false),
                        (0, 2) => (Alu::Or, false),
                        (0, 3) => (Alu::And, false),
                        (1, 0) => (Alu::Sub, true),
                        (1, 1) => (Alu::Add, true),
                        _ => return ill,
                    };
                    let k = if w {
                        Kind::AluRegW(kind)
                    } else {
                        Kind::AluReg(kind)
                    };
                    Op::new(k, rs1p, rs1p, rdp, 0)
                }
            }
        }
        (1, 5) => {
            let imm = sext(
                (bits(c, 12, 12) << 11)
                    | (bits(c, 11, 11) << 4)
                    | (bits(c, 10, 9) << 8)
                    | (bits(c, 8, 8) << 10)
                    | (bits(c, 7, 7) << 6)
                    | (bits(c, 6, 6) << 7)
                    | (bits(c, 5, 3) << 1)
                    | (bits(c, 2, 2) << 5),
                12,
            );
            Op::new(Kind::Jal, 0, 0, 0, imm)
        }
        (1, 6 | 7) => {
            let imm = sext(
                (bits(c, 12, 12) << 8)
                    | (bits(c, 11, 10) << 3)
                    | (bits(c, 6, 5) << 6)
                    | (bits(c, 4, 3) << 1)
                    | (bits(c, 2, 2) << 5),
                9,
            );
            let cond = if f3 == 6 { Cond::Eq } else { Cond::Ne };
            Op::new(Kind::Branch(cond), 0, rs1p, 0, imm)
        }
        (2, 0) => Op::new(
            Kind::AluImm(Alu::Sll),
            rd,
            rd,
            0,
            ((bits(c, 12, 12) << 5) | rs2) as i32,
        ),
        (2, 1 | 3) => {
            let imm = (bits(c, 12, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6);
            if f3 == 1 {
                Op::new(Kind::FLoad { fmt: Fmt::D }, rd, 2, 0, imm as i32)
            } else {
                if rd == 0 {
                    return ill;
                }
                Op::new(
                    Kind::Load {
                        size: 3,
                        unsigned: false,
                    },
                    rd,
                    2,
                    0,
                    imm as i32,
                )
            }
        }
        (2, 2) => {
            if rd == 0 {
                return ill;
            }
            let imm = (bits(c, 12, 12) << 5) | (bits(c, 6, 4) << 2) | (bits(c, 3, 2) << 6);
            Op::new(
                Kind::Load {
                    size: 2,
                    unsigned: false,
                },
                rd,
                2,
                0,
                imm as i32,
            )
        }
        (2, 4) => match (bits(c, 12, 12), rd, rs2) {
            (0, 0, 0) => return ill,
            (0, _, 0) => Op::new(Kind::Jalr, 0, rd, 0, 0),
            (0, _, _) => Op::new(Kind::AluReg(Alu::Add), rd, 0, rs2, 0),
            (1, 0, 0) => Op::new(Kind::Ebreak, 0, 0, 0, 0),
            (1, _, 0) => Op::new(Kind::Jalr, 1, rd, 0, 0),
            _ => Op::new(Kind::AluReg(Alu::Add), rd, rd, rs2, 0),
        },
        (2, 5 | 7) => {
            let imm = (bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6);
            if f3 == 5 {
                Op::new(Kind::FStore { fmt: Fmt::D }, 0, 2, rs2, imm as i32)
            } else {
                Op::new(Kind::Store { size: 3 }, 0, 2, rs2, imm as i32)
            }
        }
        (2, 6) => {
            let imm = (bits(c, 12, 9) << 2) | (bits(c, 8, 7) << 6);
            Op::new(Kind::Store { size: 2 }, 0, 2, rs2, imm as i32)
        }
        _ => return ill,
    };
    short(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_common_32bit_forms() {
        // addi a0, a0, -1
        let op = decode32(0xfff5_0513);
        assert_eq!(op.kind, Kind::AluImm(Alu::Add));
        assert_eq!((op.rd, op.rs1, op.imm), (10, 10, -1));
        // jal ra, -4 (0xffdff0ef)
        let op = decode32(0xffdf_f0ef);
        assert_eq!((op.kind, op.rd, op.imm), (Kind::Jal, 1, -4));
        // bne a0, zero, -8 : 0xfe051ce3
        let op = decode32(0xfe05_1ce3);
        assert_eq!((op.kind, op.rs1, op.imm), (Kind::Branch(Cond::Ne), 10, -8));
        // sd ra, 8(sp): 0x00113423
        let op = decode32(0x0011_3423);
        assert_eq!(
            (op.kind, op.rs1, op.rs2, op.imm),
            (Kind::Store { size: 3 }, 2, 1, 8)
        );
        // csrrw zero, mtvec, t0: 0x30529073
        let op = decode32(0x3052_9073);
        assert_eq!((op.kind, op.rs1, op.imm), (Kind::Csr(CsrOp::Rw), 5, 0x305));
        assert_eq!(decode32(0x3020_0073).kind, Kind::Mret);
        assert_eq!(decode32(0).kind, Kind::Illegal);
        assert_eq!(decode32(0xffff_ffff).kind, Kind::Illegal);
    }

    #[test]
    fn a_decoded_op_stays_16_bytes() {
        assert_eq!(std::mem::size_of::<Op>(), 16);
    }

    #[test]
    fn decodes_compressed_forms() {
        // c.addi a0, -1 = 0x157d
        let op = decode16(0x157d);
        assert_eq!(
            (op.kind, op.rd, op.imm, op.len),
            (Kind::AluImm(Alu::Add), 10, -1, 2)
        );
        // c.ldsp ra, 8(sp) = 0x60a2
        let op = decode16(0x60a2);
        assert_eq!(
            (op.kind, op.rd, op.rs1, op.imm),
            (
                Kind::Load {
                    size: 3,
                    unsigned: false
                },
                1,
                2,
                8
            )
        );
        // c.jr ra = 0x8082
        let op = decode16(0x8082);
        assert_eq!((op.kind, op.rd, op.rs1), (Kind::Jalr, 0, 1));
        // c.unimp (all zero) is illegal
        assert_eq!(decode16(0).kind, Kind::Illegal);
        assert!(is_compressed(0x8082));
        assert!(!is_compressed(0x0513));
    }
}
