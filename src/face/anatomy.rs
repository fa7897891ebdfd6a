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

/// The subject's right nostril opening (dark, not skin), from the alar rim (166) across the
/// nostril sill (79, 239) to the columella (238, 20) and back below it (60, 240).
pub const RIGHT_NOSTRIL: &[usize] = &[166, 79, 239, 238, 20, 60, 240];

/// The subject's left nostril opening; mirror image of [`RIGHT_NOSTRIL`].
pub const LEFT_NOSTRIL: &[usize] = &[392, 309, 459, 458, 250, 290, 460];

/// A face region's outline as landmark indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionOutline {
    /// Region name as reported ("cheek_left" is the subject's left).
    pub name: &'static str,
    /// Landmark indices, clockwise on screen for a frontal face (positive shoelace area in
    /// y-down image coordinates).
    pub outline: &'static [usize],
    /// The mirror-image region, for bilateral ones.
    pub mirror: Option<&'static str>,
}

/// Forehead: below, the upper edge of both brows (70 → 107, 336 → 300) and the glabella down to
/// the nasal root (55 → 193 → 168 → 417 → 285, shared with the nose and periorbital outlines);
/// above, the mesh silhouette's top (54 … 10 … 284). Laterally it stops at the brow tails
/// (71, 301) and skips the silhouette's temple points 21/251, which usually lie in hair.
pub const FOREHEAD: &[usize] = &[
    71, 54, 103, 67, 109, 10, 338, 297, 332, 284, 301, 300, 293, 334, 296, 336, 285, 417, 168, 193,
    55, 107, 66, 105, 63, 70,
];

/// Nose: nasal root (193 → 168 → 417, level with the upper eyelids), down each nasofacial
/// junction (465, 412, 343, 437, 355, 429 on the subject's left) to the alar-facial groove
/// (279, 358, 294) and across the nostril base (327 → 326 → 2 → 97 → 98). Includes dorsum,
/// sidewalls, tip and alae; the nostril openings are excluded separately.
pub const NOSE: &[usize] = &[
    168, 417, 465, 412, 343, 437, 355, 429, 279, 358, 294, 327, 326, 2, 97, 98, 64, 129, 49, 209,
    126, 217, 114, 188, 245, 193,
];

/// The subject's right periorbital region: above, the lower edge of the brow (46 → 55); medially
/// the nasal root (193, 245, beside the inner canthus); below, the lid–cheek junction
/// (233 → 228, the third ring of points below the lower lid) and laterally the crow's-feet
/// area out to the orbital rim (31, 35, 143, 139). The eye itself is excluded separately.
pub const PERIORBITAL_RIGHT: &[usize] = &[
    46, 53, 52, 65, 55, 193, 245, 233, 232, 231, 230, 229, 228, 31, 35, 143, 139,
];

/// The subject's left periorbital region; mirror image of [`PERIORBITAL_RIGHT`].
pub const PERIORBITAL_LEFT: &[usize] = &[
    368, 372, 265, 261, 448, 449, 450, 451, 452, 453, 465, 417, 285, 295, 282, 283, 276,
];

/// The subject's right cheek: above, the periorbital region's lower edge (143 → 233); medially
/// the nose (245 → 98) and the perioral region (165, 92, 186, 57, along the nasolabial fold);
/// below, the chin's lateral edge (43, 204, 211, 170) and the line 170 → 169 → 135 → 138 above
/// the mandible; laterally the ring just inside the silhouette (215, 177, 137, 227, 34), which
/// keeps clear of hair and background at the face's edge.
pub const CHEEK_RIGHT: &[usize] = &[
    143, 35, 31, 228, 229, 230, 231, 232, 233, 245, 188, 114, 217, 126, 209, 49, 129, 64, 98, 165,
    92, 186, 57, 43, 204, 211, 170, 169, 135, 138, 215, 177, 137, 227, 34,
];

/// The subject's left cheek; mirror image of [`CHEEK_RIGHT`].
pub const CHEEK_LEFT: &[usize] = &[
    264, 447, 366, 401, 435, 367, 364, 394, 395, 431, 424, 273, 287, 410, 322, 391, 327, 294, 358,
    279, 429, 355, 437, 343, 412, 465, 453, 452, 451, 450, 449, 448, 261, 265, 372,
];

/// Perioral skin, about 7 mm around the lips: above, the nostril base (98 → 327, shared with
/// the nose); laterally the nasolabial side (165, 92, 186) to beside the mouth corners (57,
/// 287); below, the mentolabial sulcus (43 … 18 … 273). The lips are excluded separately.
pub const PERIORAL: &[usize] = &[
    98, 97, 2, 326, 327, 391, 322, 410, 287, 273, 335, 406, 313, 18, 83, 182, 106, 43, 57, 186, 92,
    165,
];

/// Chin: above, the perioral region's lower edge (43 → 273); laterally lines from below the
/// mouth corners down to the jaw (424, 431, 395, 369 and 204, 211, 170, 140); below, the
/// silhouette (400, 377, 152, 148, 176).
pub const CHIN: &[usize] = &[
    43, 106, 182, 83, 18, 313, 406, 335, 273, 424, 431, 395, 369, 400, 377, 152, 148, 176, 140,
    170, 211, 204,
];

/// The face regions in report order.
pub const FACE_REGIONS: &[RegionOutline] = &[
    RegionOutline {
        name: "forehead",
        outline: FOREHEAD,
        mirror: None,
    },
    RegionOutline {
        name: "nose",
        outline: NOSE,
        mirror: None,
    },
    RegionOutline {
        name: "cheek_left",
        outline: CHEEK_LEFT,
        mirror: Some("cheek_right"),
    },
    RegionOutline {
        name: "cheek_right",
        outline: CHEEK_RIGHT,
        mirror: Some("cheek_left"),
    },
    RegionOutline {
        name: "chin",
        outline: CHIN,
        mirror: None,
    },
    RegionOutline {
        name: "perioral",
        outline: PERIORAL,
        mirror: None,
    },
    RegionOutline {
        name: "periorbital_left",
        outline: PERIORBITAL_LEFT,
        mirror: Some("periorbital_right"),
    },
    RegionOutline {
        name: "periorbital_right",
        outline: PERIORBITAL_RIGHT,
        mirror: Some("periorbital_left"),
    },
];

/// Which region keeps a pixel that two outlines both contain, highest priority first.
///
/// Adjacent outlines share their boundary landmarks, so for a frontal face contested pixels are
/// rare; they appear when a turned head folds an outline over its neighbour. Small regions with
/// sharp anatomical edges win over the large ones around them: nose, then periorbital (the
/// eyelid skin must not be counted as cheek), perioral and chin, then the cheeks and last the
/// forehead.
pub const PRIORITY: &[&str] = &[
    "nose",
    "periorbital_right",
    "periorbital_left",
    "perioral",
    "chin",
    "cheek_right",
    "cheek_left",
    "forehead",
];

/// Mirror-image landmark pairs `(right, left)` for every landmark used in the region outlines
/// and exclusions above; midline landmarks are their own mirror (listed as `(i, i)`).
pub const MIRROR_PAIRS: &[(usize, usize)] = &[
    // Midline.
    (10, 10),
    (168, 168),
    (2, 2),
    (18, 18),
    (152, 152),
    (0, 0),
    (17, 17),
    // Forehead top and temples.
    (109, 338),
    (67, 297),
    (103, 332),
    (54, 284),
    (71, 301),
    // Brows.
    (70, 300),
    (63, 293),
    (105, 334),
    (66, 296),
    (107, 336),
    (55, 285),
    (65, 295),
    (52, 282),
    (53, 283),
    (46, 276),
    // Nasal root and nose sides.
    (193, 417),
    (245, 465),
    (188, 412),
    (114, 343),
    (217, 437),
    (126, 355),
    (209, 429),
    (49, 279),
    (129, 358),
    (64, 294),
    (98, 327),
    (97, 326),
    // Nostrils.
    (166, 392),
    (79, 309),
    (239, 459),
    (238, 458),
    (20, 250),
    (60, 290),
    (240, 460),
    // Below the eye and lateral orbit.
    (233, 453),
    (232, 452),
    (231, 451),
    (230, 450),
    (229, 449),
    (228, 448),
    (31, 261),
    (35, 265),
    (143, 372),
    (139, 368),
    // Eyelid margins.
    (33, 263),
    (7, 249),
    (163, 390),
    (144, 373),
    (145, 374),
    (153, 380),
    (154, 381),
    (155, 382),
    (133, 362),
    (173, 398),
    (157, 384),
    (158, 385),
    (159, 386),
    (160, 387),
    (161, 388),
    (246, 466),
    // Cheek edges and jaw.
    (34, 264),
    (227, 447),
    (137, 366),
    (177, 401),
    (215, 435),
    (138, 367),
    (135, 364),
    (169, 394),
    (170, 395),
    (211, 431),
    (204, 424),
    (140, 369),
    (176, 400),
    (148, 377),
    // Around the mouth.
    (165, 391),
    (92, 322),
    (186, 410),
    (57, 287),
    (43, 273),
    (106, 335),
    (182, 406),
    (83, 313),
    // Lips.
    (61, 291),
    (146, 375),
    (91, 321),
    (181, 405),
    (84, 314),
    (185, 409),
    (40, 270),
    (39, 269),
    (37, 267),
];

/// The mirror image of landmark `i` per [`MIRROR_PAIRS`], if listed.
pub fn mirror_landmark(i: usize) -> Option<usize> {
    MIRROR_PAIRS.iter().find_map(|&(r, l)| {
        if r == i {
            Some(l)
        } else if l == i {
            Some(r)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `outline` mapped through [`mirror_landmark`] and reversed (mirroring flips the winding).
    fn mirrored(outline: &[usize]) -> Vec<usize> {
        outline
            .iter()
            .rev()
            .map(|&i| mirror_landmark(i).unwrap_or_else(|| panic!("{i} has no mirror")))
            .collect()
    }

    /// Equal as closed polygons: same cyclic sequence, any starting point.
    fn same_cycle(a: &[usize], b: &[usize]) -> bool {
        a.len() == b.len()
            && (0..a.len()).any(|k| a.iter().cycle().skip(k).take(a.len()).eq(b.iter()))
    }

    #[test]
    fn left_outlines_mirror_right_ones() {
        assert!(same_cycle(&mirrored(CHEEK_RIGHT), CHEEK_LEFT));
        assert!(same_cycle(&mirrored(PERIORBITAL_RIGHT), PERIORBITAL_LEFT));
        assert!(same_cycle(
            &mirrored(RIGHT_NOSTRIL)
                .into_iter()
                .rev()
                .collect::<Vec<_>>(),
            LEFT_NOSTRIL
        ));
        assert!(same_cycle(
            &mirrored(RIGHT_EYE_RING)
                .into_iter()
                .rev()
                .collect::<Vec<_>>(),
            LEFT_EYE_RING
        ));
        for symmetric in [FOREHEAD, NOSE, PERIORAL, CHIN, LIPS_OUTER] {
            assert!(same_cycle(&mirrored(symmetric), symmetric), "{symmetric:?}");
        }
    }

    #[test]
    fn mirror_pairs_are_consistent() {
        let mut seen = std::collections::HashSet::new();
        for &(r, l) in MIRROR_PAIRS {
            assert!(r < 468 && l < 468);
            assert!(seen.insert(r), "{r} listed twice");
            if l != r {
                assert!(seen.insert(l), "{l} listed twice");
            }
        }
        for &(r, l) in BILATERAL_PAIRS {
            assert!(r != l);
            if let Some(m) = mirror_landmark(r) {
                assert_eq!(m, l, "BILATERAL_PAIRS and MIRROR_PAIRS disagree on {r}");
            }
        }
    }

    #[test]
    fn priority_ranks_every_region_once() {
        assert_eq!(PRIORITY.len(), FACE_REGIONS.len());
        for r in FACE_REGIONS {
            assert_eq!(
                PRIORITY.iter().filter(|&&p| p == r.name).count(),
                1,
                "{}",
                r.name
            );
            if let Some(m) = r.mirror {
                let other = FACE_REGIONS.iter().find(|o| o.name == m).unwrap();
                assert_eq!(other.mirror, Some(r.name));
            }
            assert!(r.outline.iter().all(|&i| i < 468));
        }
    }
}
