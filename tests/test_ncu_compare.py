"""bench/ncu_compare.py without a GPU: reading ncu's CSV and judging the model against it."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))

import ncu_compare  # noqa: E402

SECTORS = "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"
REQUESTS = "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"

LONG = '''==PROF== Connected to process 123
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","123","python","h","_ZN8__main__4copyB2v1","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum","sector","131,072"
"0","123","python","h","_ZN8__main__4copyB2v1","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum","","32,768"
"1","123","python","h","_ZN8__main__12strided_copyB2v1","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum","sector","262,144"
'''

RAW = '''"ID","Process ID","Kernel Name","l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum","l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"
"","","","","sector"
"0","123","copy(Array<float, 1>)","32768","131072"
"1","123","strided_copy(Array<float, 1>)","32768","262144"
'''


def test_both_csv_layouts_read_the_same():
    for text in (LONG, RAW):
        kernels = ncu_compare.parse_ncu_csv(text)
        assert [name for name, _ in kernels][0].find("copy") >= 0 and len(kernels) == 2
        assert kernels[0][1][SECTORS] == 131072 and kernels[0][1][REQUESTS] == 32768
        assert kernels[1][1][SECTORS] == 262144


def test_launches_match_cases_in_order_by_kernel_name():
    kernels = ncu_compare.parse_ncu_csv(RAW)
    measured = ncu_compare.match_cases(kernels)
    names = [name for name, _, _ in ncu_compare.cases()]
    assert measured[names[0]][SECTORS] == 131072          # the coalesced copy
    assert names[1] not in measured                        # the offset copy's launch is missing: strided_copy
    assert measured[names[2]][SECTORS] == 262144           # is not taken for it, but for the next case
    assert ncu_compare.names_kernel("_ZN8__main__4copyB2v1E5ArrayIf", "copy")
    assert not ncu_compare.names_kernel("_ZN8__main__12strided_copyB2v1E", "copy")


def test_a_difference_is_reported_not_hidden():
    model = {"copy": {SECTORS: 131072.0, REQUESTS: 40000.0, "model__unique_sectors_global_op_ld": 100.0}}
    ncu = {"copy": {SECTORS: 131072.0 * 1.01, REQUESTS: 32768.0, "dram__bytes_read.sum": 3000.0}}
    verdicts = {r["metric"]: r["verdict"] for r in ncu_compare.compare(model, ncu)}
    assert verdicts[SECTORS] == "agrees"                   # within 5%
    assert verdicts[REQUESTS] == "DIFFERS"                 # 22% more requests in the model
    assert verdicts["dram__bytes_read.sum"] == "BOUND BROKEN"   # 3200 distinct bytes > 3000 read
    assert "DIFFERS" in ncu_compare.markdown(ncu_compare.compare(model, ncu))
