"""From probability maps to a screening answer: lesion masks and their regions, the photograph's features, the referral score, the summary, overlays."""
