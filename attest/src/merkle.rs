//! RFC 6962 / RFC 9162 Merkle tree hashing: SHA-256, leaf prefix 0x00, node prefix
//! 0x01; inclusion and consistency proofs, generated from any source of subtree
//! hashes and verified with the algorithms of RFC 9162 section 2.1.3 and 2.1.4.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly less than `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where subtree hashes come from: the hash of leaves `[lo, hi)` where the range
/// is a node of an RFC 6962 tree (aligned, power-of-two size, or a right edge).
pub trait Subtrees {
    type Error;
    /// Hash of a complete, aligned subtree: `level` k, index i covers leaves
    /// `[i * 2^k, (i + 1) * 2^k)`.
    fn complete(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;

    /// MTH(D[lo:hi]).
    fn range(&self, lo: u64, hi: u64) -> Result<Hash, Self::Error> {
        let n = hi - lo;
        if n == 0 {
            return Ok(empty_root());
        }
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            return self.complete(n.trailing_zeros(), lo / n);
        }
        let k = split(n);
        Ok(node_hash(&self.range(lo, lo + k)?, &self.range(lo + k, hi)?))
    }

    /// RFC 9162 2.1.3.1 PATH(m, D[lo:hi]), leaf `m` relative to `lo`.
    fn inclusion_proof(&self, m: u64, size: u64) -> Result<Vec<Hash>, Self::Error> {
        let mut out = Vec::new();
        self.path(m, 0, size, &mut out)?;
        Ok(out)
    }

    #[doc(hidden)]
    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<(), Self::Error> {
        let n = hi - lo;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            self.path(m, lo, lo + k, out)?;
            out.push(self.range(lo + k, hi)?);
        } else {
            self.path(m - k, lo + k, hi, out)?;
            out.push(self.range(lo, lo + k)?);
        }
        Ok(())
    }

    /// RFC 9162 2.1.4.1 PROOF(m, D[0:n]).
    fn consistency_proof(&self, m: u64, n: u64) -> Result<Vec<Hash>, Self::Error> {
        let mut out = Vec::new();
        if m == 0 || m >= n {
            return Ok(out);
        }
        self.subproof(m, 0, n, true, &mut out)?;
        Ok(out)
    }

    #[doc(hidden)]
    fn subproof(&self, m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<Hash>) -> Result<(), Self::Error> {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push(self.range(lo, hi)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, lo, lo + k, complete, out)?;
            out.push(self.range(lo + k, hi)?);
        } else {
            self.subproof(m - k, lo + k, hi, false, out)?;
            out.push(self.range(lo, lo + k)?);
        }
        Ok(())
    }
}

/// Verifies an inclusion proof (RFC 9162 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Verifies a consistency proof (RFC 9162 2.1.4.2).
pub fn verify_consistency(size1: u64, size2: u64, root1: &Hash, root2: &Hash, proof: &[Hash]) -> bool {
    if size1 > size2 {
        return false;
    }
    if size1 == size2 {
        return proof.is_empty() && root1 == root2;
    }
    if size1 == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if size1.is_power_of_two() {
        path.insert(0, *root1);
    }
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *root1 && sr == *root2 && snode == 0
}

/// Incremental root computation: the hashes of the complete subtrees on the
/// right edge (at most 64), enough to give the root at the current size.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    size: u64,
    /// `stack[i]` is a complete subtree; sizes strictly decrease.
    stack: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the complete subtrees it finished, as
    /// `(level, index, hash)`, level 0 first.
    pub fn push(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut done = vec![(0, self.size, leaf)];
        let mut cur = (0u32, leaf);
        while let Some(&(lvl, h)) = self.stack.last() {
            if lvl != cur.0 {
                break;
            }
            self.stack.pop();
            cur = (lvl + 1, node_hash(&h, &cur.1));
            done.push((cur.0, self.size >> cur.0, cur.1));
        }
        self.stack.push(cur);
        self.size += 1;
        done
    }

    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else { return empty_root() };
        for (_, h) in it {
            acc = node_hash(h, &acc);
        }
        acc
    }

    /// Rebuilds the frontier of a tree of `size` leaves from complete subtrees.
    pub fn from_subtrees<S: Subtrees>(src: &S, size: u64) -> Result<Frontier, S::Error> {
        let mut stack = Vec::new();
        let mut lo = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                stack.push((level, src.complete(level, lo >> level)?));
                lo += 1 << level;
            }
        }
        Ok(Frontier { size, stack })
    }
}

/// All levels in memory: for verifiers and tests.
#[derive(Default, Clone, Debug)]
pub struct MemTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemTree {
    pub fn push_leaf(&mut self, leaf: Hash) {
        for (lvl, idx, h) in self.frontier.push(leaf) {
            let lvl = lvl as usize;
            if self.levels.len() <= lvl {
                self.levels.push(Vec::new());
            }
            debug_assert_eq!(self.levels[lvl].len() as u64, idx);
            self.levels[lvl].push(h);
        }
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The hashes of the complete subtrees of `level` (2^level leaves each),
    /// in index order: `size >> level` of them.
    pub fn level(&self, level: u32) -> &[Hash] {
        self.levels.get(level as usize).map_or(&[], Vec::as_slice)
    }

    /// The hash of leaf `i`.
    pub fn range_leaf(&self, i: u64) -> Hash {
        self.levels[0][i as usize]
    }
}

impl Subtrees for MemTree {
    type Error = std::convert::Infallible;
    fn complete(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        Ok(self.levels[level as usize][index as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn tree(n: u64) -> (MemTree, Vec<Hash>) {
        let mut t = MemTree::default();
        let mut leaves = Vec::new();
        for i in 0..n {
            let l = leaf_hash(&i.to_be_bytes());
            leaves.push(l);
            t.push_leaf(l);
        }
        (t, leaves)
    }

    /// RFC 6962's test vector: the root of the empty tree and of one empty leaf.
    #[test]
    fn known_values() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex::encode(leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    }

    #[test]
    fn roots_match_the_recursive_definition() {
        for n in 0..70u64 {
            let (t, leaves) = tree(n);
            assert_eq!(t.root(), naive_root(&leaves), "n={n}");
            assert_eq!(t.range(0, n).unwrap(), naive_root(&leaves));
            assert_eq!(Frontier::from_subtrees(&t, n).unwrap().root(), t.root());
        }
    }

    #[test]
    fn inclusion_proofs_verify_and_reject_tampering() {
        for n in 1..40u64 {
            let (t, leaves) = tree(n);
            let root = t.root();
            for m in 0..n {
                let p = t.inclusion_proof(m, n).unwrap();
                assert!(verify_inclusion(&leaves[m as usize], m, n, &p, &root), "n={n} m={m}");
                assert!(!verify_inclusion(&leaf_hash(b"x"), m, n, &p, &root));
                if n > 1 {
                    assert!(!verify_inclusion(&leaves[m as usize], (m + 1) % n, n, &p, &root) || leaves.len() == 1);
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_reject_forks() {
        for n in 1..40u64 {
            let (tn, _) = tree(n);
            for m in 1..=n {
                let (tm, _) = tree(m);
                let p = tn.consistency_proof(m, n).unwrap();
                assert!(verify_consistency(m, n, &tm.root(), &tn.root(), &p), "m={m} n={n}");
                let forked = leaf_hash(b"fork");
                assert!(!verify_consistency(m, n, &forked, &tn.root(), &p));
                if m < n {
                    assert!(!verify_consistency(m, n, &tm.root(), &forked, &p));
                }
            }
        }
    }
}
