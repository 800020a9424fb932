# Runs pipeline_demo for a second and checks its exit status and output:
# by default that it exits 0 with a summary saying the checksums agree.
#   cmake -DDEMO=<pipeline_demo> [-DCONSUMER_OPTION=--python-consumer
#         -DCONSUMER=<script>] [-DSTATUS=1 -DEXPECT=<regex>]
#         -P check_demo.cmake
set(arguments --seconds 1)
if(DEFINED CONSUMER_OPTION)
  list(APPEND arguments ${CONSUMER_OPTION} ${CONSUMER})
endif()
if(NOT DEFINED STATUS)
  set(STATUS 0)
  set(EXPECT "\ndemo: [0-9]+ frames, [0-9.]+ frames/s, 0 bytes copied, p50/p99 handoff latency [0-9]+/[0-9]+ us, checksums agree\n")
endif()
execute_process(COMMAND ${DEMO} ${arguments}
  RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE errors)
message("${output}${errors}")
if(status EQUAL 77)
  return() # it said why it skipped: the test's SKIP_REGULAR_EXPRESSION
endif()
if(NOT status EQUAL STATUS)
  message(FATAL_ERROR "pipeline_demo exited with ${status}, not ${STATUS}")
endif()
# Progress goes one line at a time: a carriage return makes one endless line
# of a log or CI output.
if(output MATCHES "\r")
  message(FATAL_ERROR "pipeline_demo's output has a carriage return")
endif()
if(NOT "${output}${errors}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "pipeline_demo's output does not match: ${EXPECT}")
endif()
