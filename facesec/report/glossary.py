"""The ideas a reader of the report meets, each in one plain sentence with where it comes from: the report's
glossary explains what the numbers are about, not only what each key is called."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Idea:
    """A term, one sentence saying what it is, and the standard or paper it is taken from."""

    term: str
    meaning: str
    source: str


IDEAS = (
    Idea("threshold", "The similarity above which the recognizer says two faces are the same person; it is set so "
         "that strangers are accepted at a chosen rate (the FMR).", "ISO/IEC 19795-1:2021"),
    Idea("FMR (false match rate)", "The share of pairs of photos of two different people that the recognizer "
         "accepts as the same person.", "ISO/IEC 2382-37:2022, 37.09.11"),
    Idea("FNMR (false non-match rate)", "The share of pairs of photos of the same person that the recognizer "
         "rejects.", "ISO/IEC 2382-37:2022, 37.09.13"),
    Idea("TAR (true accept rate)", "The share of pairs of photos of the same person that the recognizer accepts: "
         "1 - FNMR.", "ISO/IEC 19795-1:2021"),
    Idea("out of sample", "A threshold set on people who take no other part in the run, so the FMR it promises "
         "is measured, not assumed, on the attacked people.", "ISO/IEC 19795-1:2021 (disjoint test sets)"),
    Idea("dodging", "An attack that makes the recognizer fail to recognize someone as themselves.",
         "Sharif et al., CCS 2016"),
    Idea("impersonation", "An attack that makes the recognizer accept someone as a chosen other person.",
         "Sharif et al., CCS 2016"),
    Idea("white-box", "The attacker has the recognizer's weights and computes its gradients: the strongest "
         "attacker, so its success is an upper bound.", "Tong et al., CVPR 2021 (FACESEC)"),
    Idea("transfer", "The attacker crafts the attack on other models (surrogates) and hopes it works on the "
         "target, which it never sees inside.", "Papernot et al., 2016"),
    Idea("query", "The attacker only sends inputs and reads the recognizer's answers (scores or decisions), "
         "with a budget of queries.", "Andriushchenko et al., ECCV 2020 (Square)"),
    Idea("L-inf budget (eps)", "No pixel may change by more than eps (8/255: eight steps of 255 in any colour "
         "channel).", "Madry et al., ICLR 2018"),
    Idea("L2 budget", "The total size of the change, the square root of the sum of squared pixel changes, is at "
         "most eps.", "Carlini and Wagner, S&P 2017"),
    Idea("attack success rate (ASR)", "The share of attack attempts that fooled the recognizer; lower is more "
         "robust.", "Tong et al., CVPR 2021 (FACESEC)"),
    Idea("universal", "One perturbation or accessory made for many people at once, judged on people it was not "
         "made on.", "Tong et al., CVPR 2021 (FACESEC)"),
    Idea("MMPMR", "The share of morphs accepted as every person whose face went into them (mated morph presentation "
         "match rate).", "Scherhag et al., BIOSIG 2017"),
    Idea("type I / type II (template inversion)", "Whether a face rebuilt from a leaked template is accepted "
         "against that template (type I) or against another photo of the same person (type II).",
         "Mai et al., TPAMI 2019"),
    Idea("backdoor success", "The share of people wearing the attacker's trigger whom the poisoned model accepts "
         "as the target (or, for dodging, fails to recognize).", "Gu et al., 2017 (BadNets)"),
    Idea("SSIM", "How alike two images look to a person, from 1 (identical) down; a measure of how visible a "
         "change is.", "Wang et al., IEEE TIP 2004"),
    Idea("95% interval (people resampled)", "The range a rate would likely fall in on another draw of people; "
         "whole people are resampled because one person's attempts are not independent.",
         "Field and Welsh, JRSS B 2007 (cluster bootstrap)"),
)
