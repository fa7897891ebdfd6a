//! Landmark index tables of the 468-point MediaPipe face mesh.
//!
//! "Right" and "left" are the subject's. Every list here was checked by drawing its indices on
//! `london_038_neutral.jpg` (an unmirrored studio portrait: the subject's right is on the
//! image's left).

/// Face silhouette (MediaPipe `FACEMESH_FACE_OVAL`), clockwise on screen from the forehead top
/// (10) down the subject's left side (454 at cheekbone level), chin (152), up the right side
/// (234). Its top is the upper forehead, below a typical hairline.
pub const SILHOUETTE: &[usize] = &[
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
    148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
];

/// Outer contour of the lips (vermilion border), starting at the subject's right mouth
/// corner (61), along the lower lip to the left corner (291) and back along the upper lip.
pub const LIPS_OUTER: &[usize] = &[
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
];

/// Eyelid margin of the subject's right eye: lower lid from the outer corner (33) to the inner
/// corner (133), then the upper lid back.
pub const RIGHT_EYE_RING: &[usize] = &[
    33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
];

/// Eyelid margin of the subject's left eye (outer corner 263, inner corner 362).
pub const LEFT_EYE_RING: &[usize] = &[
    263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466,
];

/// The subject's right eyebrow: upper edge from the tail (70) to the head (107), then the
/// lower edge back (55 → 46).
pub const RIGHT_BROW: &[usize] = &[70, 63, 105, 66, 107, 55, 65, 52, 53, 46];

/// The subject's left eyebrow: upper edge tail (300) to head (336), lower edge back.
pub const LEFT_BROW: &[usize] = &[300, 293, 334, 296, 336, 285, 295, 282, 283, 276];

/// Mirror-image landmark pairs `(subject's right, subject's left)` spread over the whole face
/// (eye corners, brows, cheeks, nose wings, mouth corners, jaw, temples): used for the
/// ear-to-ear axis in the pose estimate.
pub const BILATERAL_PAIRS: &[(usize, usize)] = &[
    (33, 263),
    (133, 362),
    (70, 300),
    (105, 334),
    (107, 336),
    (234, 454),
    (127, 356),
    (93, 323),
    (132, 361),
    (58, 288),
    (172, 397),
    (136, 365),
    (150, 379),
    (149, 378),
    (176, 400),
    (148, 377),
    (162, 389),
    (21, 251),
    (54, 284),
    (103, 332),
    (67, 297),
    (109, 338),
    (50, 280),
    (205, 425),
    (129, 358),
    (98, 327),
    (61, 291),
];

/// Top of the forehead on the midline (the silhouette's top point).
pub const MIDLINE_TOP: usize = 10;
/// Bottom of the chin on the midline (menton).
pub const MIDLINE_BOTTOM: usize = 152;
/// Silhouette points at cheekbone level on each side `(right, left)`: their distance is the
/// face width.
pub const FACE_WIDTH_PAIR: (usize, usize) = (234, 454);
