"""Print one line per test case of a regrtest --junit-xml file:
"<test id>TAB<pass|fail|error|skip>"."""

import sys
import xml.etree.ElementTree as ET

for path in sys.argv[1:]:
    for tc in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in tc}
        if "error" in tags:
            what = "error"
        elif "failure" in tags:
            what = "fail"
        elif "skipped" in tags:
            what = "skip"
        else:
            what = "pass"
        print(f"{tc.get('name')}\t{what}")
