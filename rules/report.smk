# The HTML report: results/report/index.html (+ assets/) and, with
# report.self_contained, report-standalone.html (every image embedded, for mailing).
#
# Its params are exactly config["report"] and no other rule reads that section, so
# editing report settings re-runs this job and nothing else (tests/test_report.py
# checks the dry-run job list). The whole config is shown in the page but read by
# the script from the workflow, not passed as params, for the same reason.
#
# Inputs and outputs: report_inputs/report_outputs in common.smk.


rule report:
    input:
        unpack(report_inputs),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        **report_outputs(),
    log:
        L.log("report"),
    benchmark:
        L.benchmark("report")
    conda:
        "../envs/train.yaml"
    params:
        options=REPORT,
    script:
        "../scripts/report.py"
