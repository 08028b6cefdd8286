"""The referral score: features of graded photographs, fitting and cross-validating it, its report and plots (redseg-screen)."""
