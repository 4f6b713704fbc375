/**
 * A QR code as an SVG element, made locally by the vendored qrcode-generator (MIT,
 * vendor/qrcode.mjs): nothing is fetched, no remote code.
 */

import qrcode from '../vendor/qrcode.mjs';

const SVG = 'http://www.w3.org/2000/svg';
const QUIET_ZONE = 4; // modules of white border the QR specification asks for

/** @returns {SVGSVGElement} */
export function qrSvg(text, sizePx = 148) {
  const qr = qrcode(0, 'M'); // 0: the smallest version that fits; M: 15 % error correction
  qr.addData(text, 'Byte');
  qr.make();
  const n = qr.getModuleCount();
  const full = n + 2 * QUIET_ZONE;
  let d = '';
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      if (qr.isDark(row, col)) d += `M${col + QUIET_ZONE} ${row + QUIET_ZONE}h1v1h-1z`;
    }
  }
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${full} ${full}`);
  svg.setAttribute('width', String(sizePx));
  svg.setAttribute('height', String(sizePx));
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('role', 'img');
  const bg = document.createElementNS(SVG, 'rect');
  bg.setAttribute('width', String(full));
  bg.setAttribute('height', String(full));
  bg.setAttribute('fill', '#fff');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill', '#000');
  svg.append(bg, path);
  return svg;
}
