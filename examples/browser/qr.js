// A QR code encoder for one purpose: showing a link on a page (ISO/IEC 18004). Byte mode only,
// error correction level M (15 % of the code may be damaged), versions 1 to 40 (14 to 2331
// bytes), the mask chosen by the standard's penalty rules. No third-party code; unit tests in
// qr.test.js (`node --test`), and tests/example.rs decodes codes of every version with zbarimg.

/** Error correction codewords per block, level M, for versions 1 to 40 (the standard's table). */
const EC_PER_BLOCK = [
  10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
  26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
];

/** Blocks the codewords are split into, level M, for versions 1 to 40 (the standard's table). */
const BLOCKS = [
  1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16,
  17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49,
];

/** Level M's two bits in the format information. */
const LEVEL_M = 0b00;

/** Modules of a version-`version` symbol that carry codewords (not patterns or format). */
function dataModules(version) {
  const size = 4 * version + 17;
  let modules = size * size - 3 * 8 * 8 - 2 * (size - 16) - 2 * 15 - 1;
  if (version >= 2) {
    const n = Math.floor(version / 7) + 2;
    // n * n alignment patterns but the three under finders, less those sharing the timing lines.
    modules -= (n * n - 3) * 25 - 2 * (n - 2) * 5;
  }
  if (version >= 7) modules -= 2 * 18;
  return modules;
}

/** Codewords of a version: all, and the data among them. */
export function codewords(version) {
  const total = Math.floor(dataModules(version) / 8);
  return { total, data: total - EC_PER_BLOCK[version - 1] * BLOCKS[version - 1] };
}

/** Bits of the byte count in byte mode. */
function countBits(version) {
  return version <= 9 ? 8 : 16;
}

/** The most bytes a version holds in byte mode at level M. */
export function capacity(version) {
  return Math.floor((codewords(version).data * 8 - 4 - countBits(version)) / 8);
}

/** Product of two elements of GF(2^8) modulo the QR polynomial x^8 + x^4 + x^3 + x^2 + 1. */
export function gfMultiply(a, b) {
  let product = 0;
  for (let bit = 7; bit >= 0; bit--) {
    product = ((product << 1) ^ (product & 0x80 ? 0x11d : 0)) & 0xff;
    if ((b >> bit) & 1) product ^= a;
  }
  return product;
}

/** The `degree` Reed-Solomon error correction codewords of `data`. */
export function reedSolomon(data, degree) {
  // The generator (x - 1)(x - 2)(x - 4)...(x - 2^(degree-1)), leading 1 left out.
  const generator = new Array(degree).fill(0);
  generator[degree - 1] = 1;
  let root = 1;
  for (let i = 0; i < degree; i++) {
    for (let j = 0; j < degree; j++) {
      generator[j] = gfMultiply(generator[j], root) ^ (j + 1 < degree ? generator[j + 1] : 0);
    }
    root = gfMultiply(root, 2);
  }
  const remainder = new Array(degree).fill(0);
  for (const byte of data) {
    const factor = byte ^ remainder.shift();
    remainder.push(0);
    for (let j = 0; j < degree; j++) remainder[j] ^= gfMultiply(generator[j], factor);
  }
  return remainder;
}

/** The data codewords of `bytes` for `version`: mode, count, bytes, terminator, padding. */
function dataCodewords(bytes, version) {
  const bits = [];
  const put = (value, length) => {
    for (let i = length - 1; i >= 0; i--) bits.push((value >>> i) & 1);
  };
  put(0b0100, 4);
  put(bytes.length, countBits(version));
  for (const byte of bytes) put(byte, 8);
  const room = codewords(version).data * 8;
  put(0, Math.min(4, room - bits.length));
  put(0, (8 - (bits.length % 8)) % 8);
  for (let pad = 0xec; bits.length < room; pad ^= 0xec ^ 0x11) put(pad, 8);
  const out = [];
  for (let i = 0; i < bits.length; i += 8) {
    out.push(bits.slice(i, i + 8).reduce((byte, bit) => (byte << 1) | bit, 0));
  }
  return out;
}

/** Data and error correction codewords, split into blocks and interleaved as transmitted. */
export function interleaved(data, version) {
  const { total } = codewords(version);
  const blocks = BLOCKS[version - 1];
  const ecLength = EC_PER_BLOCK[version - 1];
  const shortLength = Math.floor(total / blocks) - ecLength;
  const longBlocks = total % blocks;
  const dataBlocks = [];
  for (let b = 0, at = 0; b < blocks; b++) {
    const length = shortLength + (b >= blocks - longBlocks ? 1 : 0);
    dataBlocks.push(data.slice(at, at + length));
    at += length;
  }
  const out = [];
  for (let i = 0; i <= shortLength; i++) {
    for (const block of dataBlocks) if (i < block.length) out.push(block[i]);
  }
  const ecBlocks = dataBlocks.map((block) => reedSolomon(block, ecLength));
  for (let i = 0; i < ecLength; i++) for (const block of ecBlocks) out.push(block[i]);
  return out;
}

/** The 15 format bits for level M and `mask`: BCH(15,5) code, then the fixed XOR pattern. */
export function formatBits(mask) {
  const data = (LEVEL_M << 3) | mask;
  let remainder = data;
  for (let i = 0; i < 10; i++) remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537);
  return ((data << 10) | remainder) ^ 0x5412;
}

/** The 18 version bits (versions 7 and up): BCH(18,6) code. */
export function versionBits(version) {
  let remainder = version;
  for (let i = 0; i < 12; i++) remainder = (remainder << 1) ^ ((remainder >> 11) * 0x1f25);
  return (version << 12) | remainder;
}

/** Centres of the alignment patterns along one axis, ascending. */
export function alignmentCentres(version) {
  if (version === 1) return [];
  const size = 4 * version + 17;
  const n = Math.floor(version / 7) + 2;
  // 6, then n - 1 centres evenly spaced back from size - 7, the gap rounded up to even.
  const step = version === 32 ? 26 : Math.ceil((size - 13) / (n - 1) / 2) * 2;
  const centres = [6];
  for (let i = n - 2; i >= 0; i--) centres.push(size - 7 - i * step);
  return centres;
}

/** The standard's eight masks: whether the data module at row `r`, column `c` is flipped. */
const MASKS = [
  (r, c) => (r + c) % 2 === 0,
  (r) => r % 2 === 0,
  (r, c) => c % 3 === 0,
  (r, c) => (r + c) % 3 === 0,
  (r, c) => (Math.floor(r / 2) + Math.floor(c / 3)) % 2 === 0,
  (r, c) => ((r * c) % 2) + ((r * c) % 3) === 0,
  (r, c) => (((r * c) % 2) + ((r * c) % 3)) % 2 === 0,
  (r, c) => (((r + c) % 2) + ((r * c) % 3)) % 2 === 0,
];

/** A symbol being built: dark modules, and which modules are patterns (not data). */
class Matrix {
  constructor(version) {
    this.version = version;
    this.size = 4 * version + 17;
    this.dark = Array.from({ length: this.size }, () => new Array(this.size).fill(false));
    this.fixed = Array.from({ length: this.size }, () => new Array(this.size).fill(false));
  }

  /** Sets a pattern module (data never goes there). */
  set(row, col, dark) {
    this.dark[row][col] = dark;
    this.fixed[row][col] = true;
  }

  /** Timing lines, the three finders with their separators, the alignment patterns, the format
   * areas and (version 7 and up) the version information. */
  patterns() {
    const { size } = this;
    for (let i = 0; i < size; i++) {
      this.set(6, i, i % 2 === 0);
      this.set(i, 6, i % 2 === 0);
    }
    for (const [top, left] of [[0, 0], [0, size - 7], [size - 7, 0]]) {
      // The 7x7 finder and its light separator, clipped at the edges.
      for (let dr = -1; dr <= 7; dr++) {
        for (let dc = -1; dc <= 7; dc++) {
          const r = top + dr;
          const c = left + dc;
          if (r < 0 || c < 0 || r >= size || c >= size) continue;
          const ring = Math.max(Math.abs(dr - 3), Math.abs(dc - 3));
          this.set(r, c, ring !== 2 && ring !== 4);
        }
      }
    }
    const centres = alignmentCentres(this.version);
    const last = centres.length - 1;
    centres.forEach((r, i) => {
      centres.forEach((c, j) => {
        if ((i === 0 && j === 0) || (i === 0 && j === last) || (i === last && j === 0)) return;
        for (let dr = -2; dr <= 2; dr++) {
          for (let dc = -2; dc <= 2; dc++) {
            this.set(r + dr, c + dc, Math.max(Math.abs(dr), Math.abs(dc)) !== 1);
          }
        }
      });
    });
    this.format(0); // reserves the format areas; written again once the mask is chosen
    if (this.version >= 7) {
      const bits = versionBits(this.version);
      for (let i = 0; i < 18; i++) {
        const dark = ((bits >> i) & 1) === 1;
        const a = size - 11 + (i % 3);
        const b = Math.floor(i / 3);
        this.set(b, a, dark);
        this.set(a, b, dark);
      }
    }
  }

  /** The format information for `mask`, in both of its places, and the dark module. */
  format(mask) {
    const { size } = this;
    const bits = formatBits(mask);
    const bit = (i) => ((bits >> i) & 1) === 1;
    for (let i = 0; i <= 5; i++) this.set(i, 8, bit(i));
    this.set(7, 8, bit(6));
    this.set(8, 8, bit(7));
    this.set(8, 7, bit(8));
    for (let i = 9; i < 15; i++) this.set(8, 14 - i, bit(i));
    for (let i = 0; i < 8; i++) this.set(8, size - 1 - i, bit(i));
    for (let i = 8; i < 15; i++) this.set(size - 15 + i, 8, bit(i));
    this.set(size - 8, 8, true); // the dark module
  }

  /** Places the codewords' bits in the two-column zigzag, right to left, skipping column 6. */
  place(codewordList) {
    const { size } = this;
    let i = 0;
    for (let right = size - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      const upward = ((size - 1 - right) >> 1) % 2 === 0;
      for (let step = 0; step < size; step++) {
        const row = upward ? size - 1 - step : step;
        for (const col of [right, right - 1]) {
          if (this.fixed[row][col]) continue;
          const byte = codewordList[i >> 3];
          this.dark[row][col] = byte !== undefined && ((byte >> (7 - (i & 7))) & 1) === 1;
          i++;
        }
      }
    }
  }

  /** Flips the data modules that `mask` selects. */
  mask(mask) {
    for (let r = 0; r < this.size; r++) {
      for (let c = 0; c < this.size; c++) {
        if (!this.fixed[r][c] && MASKS[mask](r, c)) this.dark[r][c] = !this.dark[r][c];
      }
    }
  }
}

/** The standard's penalty score of a finished symbol (lower is easier to read). */
export function penalty(dark) {
  const size = dark.length;
  let score = 0;
  const lines = [];
  for (let i = 0; i < size; i++) {
    lines.push(dark[i]);
    lines.push(dark.map((row) => row[i]));
  }
  const finderLike = [true, false, true, true, true, false, true];
  for (const line of lines) {
    // Runs of five or more modules of one colour: 3, plus 1 per module beyond five.
    let run = 1;
    for (let i = 1; i <= size; i++) {
      if (i < size && line[i] === line[i - 1]) {
        run++;
      } else {
        if (run >= 5) score += run - 2;
        run = 1;
      }
    }
    // 1:1:3:1:1 dark-light pattern with four light modules on one side (outside is light).
    for (let i = 0; i + 7 <= size; i++) {
      if (!finderLike.every((d, k) => line[i + k] === d)) continue;
      const lightFrom = (from, to) => {
        for (let k = from; k < to; k++) if (k >= 0 && k < size && line[k]) return false;
        return true;
      };
      if (lightFrom(i - 4, i) || lightFrom(i + 7, i + 11)) score += 40;
    }
  }
  for (let r = 0; r + 1 < size; r++) {
    for (let c = 0; c + 1 < size; c++) {
      const d = dark[r][c];
      if (dark[r][c + 1] === d && dark[r + 1][c] === d && dark[r + 1][c + 1] === d) score += 3;
    }
  }
  const darkCount = dark.reduce((n, row) => n + row.filter(Boolean).length, 0);
  const percent = (darkCount * 100) / (size * size);
  score += Math.floor(Math.abs(percent - 50) / 5) * 10;
  return score;
}

/**
 * The QR code of `text` (UTF-8) in the smallest version that holds it: `{version, size, mask,
 * dark}`, `dark[row][col]` true for a dark module, without the quiet zone. Throws past 2331
 * bytes. `onlyMask` (0 to 7) forces a mask instead of the least penalty, for tests.
 */
export function encode(text, onlyMask) {
  const bytes = new TextEncoder().encode(text);
  let version = 1;
  while (version <= 40 && capacity(version) < bytes.length) version++;
  if (version > 40) throw new RangeError(`${bytes.length} bytes do not fit in a QR code`);
  const all = interleaved(dataCodewords(bytes, version), version);
  let best = null;
  for (let mask = 0; mask < 8; mask++) {
    if (onlyMask !== undefined && mask !== onlyMask) continue;
    const matrix = new Matrix(version);
    matrix.patterns();
    matrix.place(all);
    matrix.mask(mask);
    matrix.format(mask);
    const score = penalty(matrix.dark);
    if (best === null || score < best.score) best = { score, mask, matrix };
  }
  const { size, dark } = best.matrix;
  return { version, size, mask: best.mask, dark };
}

/** Draws `code` on `canvas`, `scale` pixels a module, with the 4-module light quiet zone. */
export function draw(code, canvas, scale) {
  const side = (code.size + 8) * scale;
  canvas.width = side;
  canvas.height = side;
  const context = canvas.getContext('2d');
  context.fillStyle = '#fff';
  context.fillRect(0, 0, side, side);
  context.fillStyle = '#000';
  code.dark.forEach((row, r) =>
    row.forEach((isDark, c) => {
      if (isDark) context.fillRect((c + 4) * scale, (r + 4) * scale, scale, scale);
    }),
  );
}
