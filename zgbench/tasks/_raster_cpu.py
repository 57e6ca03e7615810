"""The CPU kernel of :mod:`zgbench.tasks._raster`: a compiled (numba) z-buffer rasterizer.

Hand-written because no well-kept hard CPU rasterizer library renders B meshes x V views in
one call from arrays (the libraries that rasterize meshes are differentiable GPU renderers or
one-scene-at-a-time black boxes such as Mitsuba), and the torch tensor path of ``_raster``
pays ~40 torch ops per fragment on the CPU.

It computes exactly what the torch path computes: the same culling (bounding box without a
pixel centre, behind the near plane, not finite, zero area), the same per-scanline spans from
the three edge functions (with the same 1e-4 pixel slack), the same depth from 1/z affine in
screen space, in the same order of floating-point operations and in the input's precision,
and the same winner: the nearest depth, ties to the lower face id (faces are visited in
ascending order and a fragment wins only if strictly nearer). One image (one mesh seen from
one camera) is rasterized sequentially by one thread; ``prange`` spreads the images over
numba's threads, so the result does not depend on the thread count.

``_raster`` imports this module on first use (numba takes about a second to import, and most
``zgbench`` commands never rasterize) and keeps the torch path if the import fails.

The kernels compile on first call (about ten seconds) and are cached (see ``_kernel``).
Scalars reach the kernels in a ``consts`` array of the input's dtype, so one compiled
kernel per dtype does float32 arithmetic for float32 input (a Python float would be float64).
"""

from __future__ import annotations

import numba
import numpy as np


def _kernel(**options):
    """``numba.njit`` with what every kernel here shares: no GIL, IEEE division (inf / NaN,
    as torch, instead of Python's ZeroDivisionError), and an on-disk cache where numba finds a
    writable folder (next to this file, else its user cache); where it finds none, numba
    refuses ``cache=True`` at decoration, and the kernel is compiled per process instead."""
    def decorate(function):
        try:
            return numba.njit(cache=True, nogil=True, error_model="numpy", **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(nogil=True, error_model="numpy", **options)(function)
    return decorate


def rasterize(verts: np.ndarray, faces: np.ndarray, eye: np.ndarray, rotation: np.ndarray,
              focal: float, height: int, width: int, near: float, far: float,
              threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Face ids ``[B*V, H*W]`` (int64, -1 background) and float32 depths (inf background) of
    meshes ``verts [B, N, 3]`` sharing ``faces [F, 3]`` seen by V cameras (``eye [V, 3]``,
    world-to-camera ``rotation [V, 3, 3]``, ``focal`` in pixels); image b * V + v is mesh b
    from camera v. The projection is ``_raster.project``'s, operation for operation.

    ``threads``: numba threads for the call (clipped to the pool numba started with).
    """
    images = verts.shape[0] * eye.shape[0]
    face = np.empty((images, height * width), np.int64)
    depth = np.empty((images, height * width), np.float32)
    # Every scalar in the input's precision, as the torch path rounds its Python scalars:
    # mixing a float32 with an int or a float64 constant would promote to float64 in numba.
    consts = np.array([0.0, 0.5, 1.0, 1e-4, 1e-9, near, far, width - 1, height - 1, np.inf,
                       focal, width / 2, height / 2], verts.dtype)
    args = (verts, faces, eye.astype(verts.dtype), rotation.astype(verts.dtype), height,
            width, consts, face, depth)
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS, images))
    if threads == 1:
        # The serial entry point never starts numba's thread pool: with one thread (the
        # CLI's default) no idle OpenMP workers spin next to torch's on a busy machine.
        _rasterize_serial(*args)
    else:
        _in_parallel(threads, _rasterize_parallel, args)
    return face, depth


def _in_parallel(threads: int, kernel, args: tuple) -> None:
    """Run a ``prange`` kernel on ``threads`` threads, images handed out one at a time.

    Chunks of one image (not numba's default of an equal share per thread) let a thread that
    runs ahead take over images from one that the OS has descheduled or that drew costlier
    images; which thread renders an image never changes what is rendered.
    """
    numba.set_num_threads(threads)
    chunk = numba.set_parallel_chunksize(1)
    try:
        kernel(*args)
    finally:
        numba.set_parallel_chunksize(chunk)


#: Positions in the ``consts`` array the kernels read their scalars from.
(ZERO, HALF, ONE, SLACK, MIN_AREA, NEAR, FAR, LAST_X, LAST_Y, INF, FOCAL, CENTRE_X,
 CENTRE_Y) = range(13)
#: Columns of the per-image vertex table: screen x, y, camera z, then the pixel-centre
#: bounds ceil(x - 1/2), ceil(y - 1/2), floor(x - 1/2), floor(y - 1/2) (see ``_project``).
SX, SY, SZ, CEIL_X, CEIL_Y, FLOOR_X, FLOOR_Y = range(7)


@_kernel(parallel=True)
def _rasterize_parallel(verts, faces, eye, rotation, height, width, consts, face, depth):
    """Every image in parallel, each one by one thread (deterministic)."""
    views = eye.shape[0]
    for image in numba.prange(face.shape[0]):
        mesh, view = image // views, image % views
        points = _project(verts[mesh], eye[view], rotation[view], consts)
        _rasterize_image(points, faces, height, width, consts, face[image], depth[image])


@_kernel()
def _rasterize_serial(verts, faces, eye, rotation, height, width, consts, face, depth):
    """Every image in turn, in the calling thread."""
    views = eye.shape[0]
    for image in range(face.shape[0]):
        mesh, view = image // views, image % views
        points = _project(verts[mesh], eye[view], rotation[view], consts)
        _rasterize_image(points, faces, height, width, consts, face[image], depth[image])


@_kernel()
def _project(verts, eye, rotation, consts):
    """The vertex table ``[N, 7]`` (columns :data:`SX` ...) of one mesh in one camera.

    The same operations in the same order as ``_raster.project``, so that both
    rasterizers see the same bits.
    """
    half = consts[HALF]
    focal, centre_x, centre_y = consts[FOCAL], consts[CENTRE_X], consts[CENTRE_Y]
    points = np.empty((verts.shape[0], 7), verts.dtype)
    for n in range(verts.shape[0]):
        dx, dy, dz = verts[n, 0] - eye[0], verts[n, 1] - eye[1], verts[n, 2] - eye[2]
        x = dx * rotation[0, 0] + dy * rotation[0, 1] + dz * rotation[0, 2]
        y = dx * rotation[1, 0] + dy * rotation[1, 1] + dz * rotation[1, 2]
        z = dx * rotation[2, 0] + dy * rotation[2, 1] + dz * rotation[2, 2]
        sx = centre_x + focal * x / z
        sy = centre_y - focal * y / z
        points[n, SX], points[n, SY], points[n, SZ] = sx, sy, z
        # Rounding commutes with min and max (both monotone), so the bounding box of
        # a triangle's pixel centres is the min / max of these (exactly, in floats).
        points[n, CEIL_X], points[n, CEIL_Y] = np.ceil(sx - half), np.ceil(sy - half)
        points[n, FLOOR_X], points[n, FLOOR_Y] = np.floor(sx - half), np.floor(sy - half)
    return points


@_kernel()
def _rasterize_image(points, faces, height, width, consts, face, depth):
    """One image: every triangle in ascending face order, z-test against ``depth``."""
    face[:] = -1
    depth[:] = np.inf
    zero, near = consts[ZERO], consts[NEAR]
    last_x, last_y = consts[LAST_X], consts[LAST_Y]
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        # Cull as the torch path does: bounding box without a pixel centre, behind the
        # near plane; non-finite corners (NaN compares false, inf is caught explicitly).
        lo_x = min(min(points[i0, CEIL_X], points[i1, CEIL_X]), points[i2, CEIL_X])
        hi_x = max(max(points[i0, FLOOR_X], points[i1, FLOOR_X]), points[i2, FLOOR_X])
        if not (hi_x >= max(lo_x, zero) and lo_x <= last_x):
            continue
        lo_y = min(min(points[i0, CEIL_Y], points[i1, CEIL_Y]), points[i2, CEIL_Y])
        hi_y = max(max(points[i0, FLOOR_Y], points[i1, FLOOR_Y]), points[i2, FLOOR_Y])
        if not (hi_y >= max(lo_y, zero) and lo_y <= last_y):
            continue
        x0, y0, z0 = points[i0, SX], points[i0, SY], points[i0, SZ]
        x1, y1, z1 = points[i1, SX], points[i1, SY], points[i1, SZ]
        x2, y2, z2 = points[i2, SX], points[i2, SY], points[i2, SZ]
        if not (min(min(z0, z1), z2) > near and np.isfinite(x0 + x1 + x2)
                and np.isfinite(y0 + y1 + y2) and np.isfinite(z0 + z1 + z2)):
            continue
        first = max(lo_y, zero)
        last = min(hi_y, last_y)
        _triangle(x0, y0, z0, x1, y1, z1, x2, y2, z2, f, first, last, width, consts,
                  face, depth)


@_kernel(inline="always")
def _triangle(x0, y0, z0, x1, y1, z1, x2, y2, z2, f, first, last, width, consts, face,
              depth):
    """Edge functions, the 1/z plane, then the rows ``first..last`` of one triangle.

    Edge i runs from corner i+1 to corner i+2 (a x + b y + c), as ``_raster._edges``.
    """
    a0, b0 = y1 - y2, x2 - x1
    a1, b1 = y2 - y0, x0 - x2
    a2, b2 = y0 - y1, x1 - x0
    c0 = -(a0 * x1 + b0 * y1)
    c1 = -(a1 * x2 + b1 * y2)
    c2 = -(a2 * x0 + b2 * y0)
    area = a0 * x0 + b0 * y0 + c0
    if not abs(area) > consts[MIN_AREA]:  # zero area (or NaN)
        return
    # 1/z is affine in screen space; slope summed in edge order, as torch's sum(1).
    slope_x = a0 / (area * z0) + a1 / (area * z1) + a2 / (area * z2)
    slope_y = b0 / (area * z0) + b1 / (area * z1) + b2 / (area * z2)
    zero, half, one, slack = consts[ZERO], consts[HALF], consts[ONE], consts[SLACK]
    near, far, last_x, inf = consts[NEAR], consts[FAR], consts[LAST_X], consts[INF]
    inv_z_corner = one / z0
    if area < 0:  # orient so that inside <=> every edge function >= 0
        a0, b0, c0, a1, b1, c1, a2, b2, c2 = -a0, -b0, -c0, -a1, -b1, -c1, -a2, -b2, -c2
    # Branch-free rows and pixels (selects, not ifs): triangles span a few rows each,
    # so data-dependent branches here would mostly be mispredicted.
    y = first
    while y <= last:
        yc = y + half
        r0, r1, r2 = b0 * yc + c0, b1 * yc + c1, b2 * yc + c2
        # Edge i bounds x from below if a_i > 0, from above if a_i < 0 (-r_i / a_i),
        # and blocks the row if a_i == 0 and r_i < 0 (the quotient is then unused).
        q0, q1, q2 = -r0 / a0, -r1 / a1, -r2 / a2
        low = max(max(q0 if a0 > zero else -inf, q1 if a1 > zero else -inf),
                  q2 if a2 > zero else -inf)
        high = min(min(q0 if a0 < zero else inf, q1 if a1 < zero else inf),
                   q2 if a2 < zero else inf)
        blocked = (((a0 == zero) & (r0 < zero)) | ((a1 == zero) & (r1 < zero))
                   | ((a2 == zero) & (r2 < zero)))
        start = max(np.ceil(low - half - slack), zero)
        stop = min(np.floor(high - half + slack), last_x)
        span = 0 if blocked else int(max(stop - start + one, zero))
        inv_z0 = (inv_z_corner + slope_x * (start + half - x0)) + slope_y * (yc - y0)
        pixel = int(y) * width + int(start) if span > 0 else 0
        for dx in range(span):
            inv_z = inv_z0 + slope_x * consts.dtype.type(dx)
            d = np.float32(one / inv_z)  # the torch path's depth is float32 too
            d = np.float32(far) if np.isnan(d) else min(max(d, np.float32(near)),
                                                        np.float32(far))
            # Strictly nearer wins; faces come in ascending order: ties keep the lower.
            nearer = d < depth[pixel + dx]
            depth[pixel + dx] = d if nearer else depth[pixel + dx]
            face[pixel + dx] = f if nearer else face[pixel + dx]
        y += one


#: Shading modes of :func:`shade`, numbered for the kernel (``_raster.SHADINGS`` order).
SHADING_CODES = {"lambert": 0, "normals": 1, "silhouette": 2}


def shade(verts: np.ndarray, faces: np.ndarray, face: np.ndarray, views: int, shading: str,
          lights: np.ndarray, ambient: float, threads: int) -> np.ndarray:
    """Images ``[B*V, C, H*W]`` (C = 3 for ``normals``, else 1) of meshes ``verts [B, N, 3]``
    from their face ids ``face [B*V, H*W]``, as ``_raster.shade`` computes them.

    Each covered pixel takes the flat colour of its face, computed from the face's world-space
    normal where it is needed, so the work follows the covered pixels, not B x F faces.
    ``lights [L, 4]``: unit direction towards the light and intensity.
    """
    channels = 3 if shading == "normals" else 1
    images = face.shape[0]
    out = np.empty((images, channels, face.shape[1]), verts.dtype)
    ambient_ = np.array([ambient], verts.dtype)
    lights = lights.astype(verts.dtype)
    code = SHADING_CODES[shading]
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS, images))
    if threads == 1:
        _shade_serial(verts, faces, face, views, code, lights, ambient_, out)
    else:
        _in_parallel(threads, _shade_parallel, (verts, faces, face, views, code, lights,
                                                ambient_, out))
    return out


@_kernel(parallel=True)
def _shade_parallel(verts, faces, face, views, code, lights, ambient, out):
    """Every image in parallel (image b * V + v shows mesh b)."""
    for image in numba.prange(face.shape[0]):
        _shade_image(verts[image // views], faces, face[image], code, lights, ambient,
                     out[image])


@_kernel()
def _shade_serial(verts, faces, face, views, code, lights, ambient, out):
    """Every image in turn, in the calling thread."""
    for image in range(face.shape[0]):
        _shade_image(verts[image // views], faces, face[image], code, lights, ambient,
                     out[image])


@_kernel()
def _shade_image(points, faces, face, code, lights, ambient, out):
    """One image: background 0, covered pixels the colour of their face.

    With fewer faces than pixels each face's colour is kept once computed (coarse meshes
    cover several pixels per face); with more, the table would cost more to set up than it
    saves, and each pixel computes its face's colour.
    """
    zero = ambient[0] - ambient[0]
    out[:] = zero
    if code == 2:  # silhouette
        for p in range(face.shape[0]):
            if face[p] >= 0:
                out[0, p] = zero + 1
        return
    channels = out.shape[0]
    keep = faces.shape[0] <= face.shape[0]
    colours = np.empty((faces.shape[0] if keep else 0, 3), out.dtype)
    done = np.zeros(faces.shape[0] if keep else 0, np.bool_)
    for p in range(face.shape[0]):
        f = face[p]
        if f < 0:
            continue
        if keep and done[f]:
            red, green, blue = colours[f, 0], colours[f, 1], colours[f, 2]
        else:
            red, green, blue = _face_colour(points, faces, f, code, lights, ambient[0])
            if keep:
                colours[f, 0], colours[f, 1], colours[f, 2] = red, green, blue
                done[f] = True
        out[0, p] = red
        if channels == 3:
            out[1, p], out[2, p] = green, blue


@_kernel(inline="always")
def _face_colour(points, faces, f, code, lights, ambient):
    """The colour of face ``f`` (three channels, the last two 0 for ``lambert``):
    (n + 1) / 2 for ``normals``, ambient plus the lights' clamped cosines for ``lambert``;
    n is the unit world-space normal (zero if degenerate, as ``F.normalize``)."""
    zero = ambient - ambient
    one = zero + 1
    i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
    ux, uy, uz = (points[i1, 0] - points[i0, 0], points[i1, 1] - points[i0, 1],
                  points[i1, 2] - points[i0, 2])
    vx, vy, vz = (points[i2, 0] - points[i0, 0], points[i2, 1] - points[i0, 1],
                  points[i2, 2] - points[i0, 2])
    nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    norm = max(np.sqrt(nx * nx + ny * ny + nz * nz), points.dtype.type(1e-12))
    nx, ny, nz = nx / norm, ny / norm, nz / norm
    if code == 1:  # normals
        return (nx + one) / (one + one), (ny + one) / (one + one), (nz + one) / (one + one)
    value = ambient
    for light in range(lights.shape[0]):
        cosine = nx * lights[light, 0] + ny * lights[light, 1] + nz * lights[light, 2]
        value += lights[light, 3] * max(cosine, zero)
    return value, zero, zero
